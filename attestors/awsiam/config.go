package awsiam

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/attestors"
)

// Type is the attestation type on the wire.
const Type = "aws_iam"

// ChallengeHeader carries the server challenge in the signed request. Its
// value is ChallengeValue(server, challenge): the name of the server the
// agent attests to and the challenge, so a signed request relayed to another
// deployment is refused there.
const ChallengeHeader = "X-Hallmark-Challenge"

// ChallengeValue is the value of ChallengeHeader: the server's name (its
// SPIFFE ID unless server_id overrides it), a space and the challenge in
// unpadded base64url.
func ChallengeValue(server string, challenge []byte) string {
	return server + " " + base64.RawURLEncoding.EncodeToString(challenge)
}

// serverName returns override, checked, or else the SPIFFE ID of td's
// server.
func serverName(override string, td spiffeid.TrustDomain) (string, error) {
	if override != "" {
		if len(override) > 255 || strings.ContainsFunc(override, func(r rune) bool { return r <= ' ' || r > '~' }) {
			return "", fmt.Errorf("server_id %q: want 1 to 255 printable ASCII characters without spaces", override)
		}
		return override, nil
	}
	id, err := attestors.ServerID(td)
	if err != nil {
		return "", fmt.Errorf("no server_id and no trust domain to name the server: %w", err)
	}
	return id.String(), nil
}

// Body is the only request body accepted.
const Body = "Action=GetCallerIdentity&Version=2011-06-15"

// DefaultClockSkew bounds X-Amz-Date against the server's clock.
const DefaultClockSkew = 5 * time.Minute

// regions are those whose regional STS endpoints are allowed by default,
// besides the global sts.amazonaws.com.
var regions = []string{
	"af-south-1", "ap-east-1", "ap-east-2", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-south-1",
	"ap-south-2", "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4", "ap-southeast-5",
	"ap-southeast-6", "ap-southeast-7", "ca-central-1", "ca-west-1", "eu-central-1", "eu-central-2", "eu-north-1",
	"eu-south-1", "eu-south-2", "eu-west-1", "eu-west-2", "eu-west-3", "il-central-1", "me-central-1",
	"me-south-1", "mx-central-1", "sa-east-1", "us-east-1", "us-east-2", "us-gov-east-1", "us-gov-west-1",
	"us-west-1", "us-west-2",
}

// DefaultSTSHosts returns the default STS host allow-list.
func DefaultSTSHosts() []string {
	hosts := []string{"sts.amazonaws.com"}
	for _, r := range regions {
		hosts = append(hosts, "sts."+r+".amazonaws.com")
	}
	return append(hosts, "sts.cn-north-1.amazonaws.com.cn", "sts.cn-northwest-1.amazonaws.com.cn")
}

// ServerConfig configures the verifier. It is decoded from HCL.
type ServerConfig struct {
	// AccountIDs is the required allow-list of AWS accounts: without it any
	// AWS principal in the world could attest.
	AccountIDs []string `hcl:"account_ids"`
	// RoleNames, when set, is the allow-list of role names.
	RoleNames []string `hcl:"role_names,optional"`
	// STSHosts is the allow-list of STS hosts the server will forward to
	// (default: the global and regional endpoints, DefaultSTSHosts).
	STSHosts []string `hcl:"sts_hosts,optional"`
	// ClockSkew bounds X-Amz-Date (Go duration, default "5m").
	ClockSkew string `hcl:"clock_skew,optional"`
	// ECSHints adds the agent's unverified ECS task metadata as
	// aws_ecs_hint selectors.
	ECSHints bool `hcl:"ecs_hints,optional"`
	// STSURLOverride sends every verified request to this base URL, keeping
	// the signed Host; for tests and private endpoints.
	STSURLOverride string `hcl:"sts_url_override,optional"`
	// ServerID replaces the server name the agent's signed challenge header
	// must carry (default: the server's SPIFFE ID,
	// spiffe://<td>/hallmark/server). Agents must be given the same value.
	ServerID string `hcl:"server_id,optional"`
}

// AgentConfig configures the collector. It is decoded from HCL.
type AgentConfig struct {
	// Region is the STS region to sign for (default $AWS_REGION, else
	// us-east-1).
	Region string `hcl:"sts_region,optional"`
	// STSHost is the STS host to sign for (default sts.<region>.amazonaws.com).
	STSHost string `hcl:"sts_host,optional"`
	// ECSTaskMetadata sends ECS task metadata v4 (task ARN, cluster, family)
	// as unverified hints.
	ECSTaskMetadata bool `hcl:"ecs_task_metadata,optional"`
	// ECSMetadataURI overrides $ECS_CONTAINER_METADATA_URI_V4.
	ECSMetadataURI string `hcl:"ecs_metadata_uri,optional"`
	// ServerID replaces the server name signed into the challenge header
	// (default: the server's SPIFFE ID, spiffe://<td>/hallmark/server); it
	// must equal the server's server_id.
	ServerID string `hcl:"server_id,optional"`

	// TrustDomain is the agent's trust domain (from the agent block, not
	// this one); it names the server by default.
	TrustDomain spiffeid.TrustDomain
}

var (
	accountRE = lazyRegexp(`^[0-9]{12}$`)
	// IAM role and session names: [\w+=,.@-]; only those that are valid
	// SPIFFE path segments can become agent IDs.
	nameRE = lazyRegexp(`^[A-Za-z0-9_.-]{1,64}$`)
	hostRE = lazyRegexp(`^[a-z0-9.-]{1,253}$`)
)

type settings struct {
	accounts map[string]bool
	roles    map[string]bool
	hosts    map[string]bool
	skew     time.Duration
	override *url.URL
}

func (c ServerConfig) settings() (settings, error) {
	s := settings{accounts: map[string]bool{}, hosts: map[string]bool{}, skew: DefaultClockSkew}
	if len(c.AccountIDs) == 0 {
		return s, fmt.Errorf("awsiam: config: account_ids is required")
	}
	for _, a := range c.AccountIDs {
		if !accountRE().MatchString(a) {
			return s, fmt.Errorf("awsiam: config: account_ids: %q is not a 12-digit account ID", a)
		}
		s.accounts[a] = true
	}
	if c.RoleNames != nil {
		if len(c.RoleNames) == 0 {
			return s, fmt.Errorf("awsiam: config: role_names is empty; omit it to allow every role")
		}
		s.roles = map[string]bool{}
		for _, r := range c.RoleNames {
			if !nameRE().MatchString(r) {
				return s, fmt.Errorf("awsiam: config: role_names: %q is not a role name usable in a SPIFFE ID", r)
			}
			s.roles[r] = true
		}
	}
	hosts := c.STSHosts
	if hosts == nil {
		hosts = DefaultSTSHosts()
	}
	for _, h := range hosts {
		if !hostRE().MatchString(h) || !strings.HasPrefix(h, "sts.") {
			return s, fmt.Errorf("awsiam: config: sts_hosts: %q is not an STS host name", h)
		}
		if _, err := hostRegion(h); err != nil {
			return s, fmt.Errorf("awsiam: config: sts_hosts: %w", err)
		}
		s.hosts[h] = true
	}
	if c.ClockSkew != "" {
		d, err := time.ParseDuration(c.ClockSkew)
		if err != nil || d <= 0 || d > 15*time.Minute {
			return s, fmt.Errorf("awsiam: config: clock_skew %q: want a duration in (0, 15m]", c.ClockSkew)
		}
		s.skew = d
	}
	if c.ServerID != "" {
		if _, err := serverName(c.ServerID, spiffeid.TrustDomain{}); err != nil {
			return s, fmt.Errorf("awsiam: config: %w", err)
		}
	}
	if c.STSURLOverride != "" {
		u, err := url.Parse(c.STSURLOverride)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return s, fmt.Errorf("awsiam: config: sts_url_override %q: want http(s)://host[:port]", c.STSURLOverride)
		}
		s.override = u
	}
	return s, nil
}

// hostRegion returns the SigV4 region of an STS host.
func hostRegion(host string) (string, error) {
	if host == "sts.amazonaws.com" {
		return "us-east-1", nil
	}
	rest, ok := strings.CutPrefix(host, "sts.")
	if !ok {
		return "", fmt.Errorf("%q is not an STS host", host)
	}
	for _, suffix := range []string{".amazonaws.com.cn", ".amazonaws.com", ".api.aws"} {
		if r, ok := strings.CutSuffix(rest, suffix); ok && r != "" && !strings.Contains(r, ".") {
			return r, nil
		}
	}
	return "", fmt.Errorf("%q is not an STS host", host)
}

// lazyRegexp compiles expr on first use. The counted repetitions in these
// expressions compile to large programs; compiling them at package init
// cost every agent hundreds of KiB of heap for verifier-only checks.
func lazyRegexp(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}
