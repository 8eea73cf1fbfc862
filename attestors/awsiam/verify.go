package awsiam

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/attestors"
	"github.com/hallmarkid/hallmark/registration"
)

// ChallengeSize is the size of the server challenge.
const ChallengeSize = 32

const (
	stsTimeout      = 10 * time.Second
	maxResponseSize = 64 << 10
)

// forwarded are the only headers (lowercase) the server forwards to STS.
var forwarded = map[string]bool{
	"authorization":        true,
	"content-type":         true,
	"x-amz-date":           true,
	"x-amz-security-token": true,
	"x-amz-content-sha256": true,
	"x-hallmark-challenge": true,
}

var contentTypes = []string{"application/x-www-form-urlencoded; charset=utf-8", "application/x-www-form-urlencoded"}

// Option configures a Verifier.
type Option interface{ apply(*Verifier) }

type optionFunc func(*Verifier)

func (f optionFunc) apply(v *Verifier) { f(v) }

// WithClock sets the time source (default time.Now).
func WithClock(now func() time.Time) Option { return optionFunc(func(v *Verifier) { v.now = now }) }

// WithHTTPClient sets the client used to reach STS; its CheckRedirect is
// replaced so that redirects are never followed.
func WithHTTPClient(c *http.Client) Option {
	return optionFunc(func(v *Verifier) { v.client = c })
}

// Verifier is the server half of the aws_iam attestor.
type Verifier struct {
	log    *slog.Logger
	cfg    ServerConfig
	s      settings
	now    func() time.Time
	client *http.Client
}

var _ attestors.NodeVerifier = (*Verifier)(nil)

// NewVerifier validates cfg and returns a verifier.
func NewVerifier(cfg ServerConfig, log *slog.Logger, opts ...Option) (*Verifier, error) {
	s, err := cfg.settings()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	v := &Verifier{log: log, cfg: cfg, s: s, now: time.Now, client: &http.Client{}}
	for _, o := range opts {
		o.apply(v)
	}
	c := *v.client
	c.Timeout = stsTimeout
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	v.client = &c
	return v, nil
}

// Type returns "aws_iam".
func (v *Verifier) Type() string { return Type }

// Verify issues a challenge, checks the signed request the agent returns,
// forwards it to STS and matches the caller's ARN against the allow-lists.
// Results are re-attestable: every attestation proves current possession
// of the role's credentials under a fresh challenge.
func (v *Verifier) Verify(ctx context.Context, req attestors.VerifyRequest) (attestors.Result, error) {
	res, err := v.verify(ctx, req)
	if err != nil {
		v.log.Warn("aws_iam attestation rejected", "err", err)
		return attestors.Result{}, err
	}
	v.log.Info("aws_iam attestation verified", "agent_id", res.AgentID.String(), "arn", res.Evidence["arn"])
	return res, nil
}

func (v *Verifier) verify(ctx context.Context, req attestors.VerifyRequest) (attestors.Result, error) {
	var hello Hello
	if err := decodeStrict(req.Payload, MaxPayloadSize, &hello); err != nil {
		return attestors.Result{}, fmt.Errorf("awsiam: payload: %w", err)
	}
	if hello.Version != 1 {
		return attestors.Result{}, fmt.Errorf("awsiam: payload: unsupported version %d", hello.Version)
	}
	if req.Challenge == nil {
		return attestors.Result{}, errors.New("awsiam: no challenge channel")
	}
	challenge := make([]byte, ChallengeSize)
	if _, err := rand.Read(challenge); err != nil {
		return attestors.Result{}, fmt.Errorf("awsiam: challenge: %w", err)
	}
	answer, err := req.Challenge(ctx, challenge)
	if err != nil {
		return attestors.Result{}, fmt.Errorf("awsiam: challenge: %w", err)
	}
	sr, err := DecodeSignedRequest(answer)
	if err != nil {
		return attestors.Result{}, err
	}
	server, err := serverName(v.cfg.ServerID, req.TrustDomain)
	if err != nil {
		return attestors.Result{}, fmt.Errorf("awsiam: %w", err)
	}
	httpReq, err := v.rebuild(ctx, sr, server, challenge)
	if err != nil {
		return attestors.Result{}, err
	}
	arn, err := v.callSTS(httpReq)
	if err != nil {
		return attestors.Result{}, err
	}
	return v.result(arn, hello.ECS, req)
}

// rebuild checks the agent's request parts and builds the outbound request
// from constants and allow-listed headers only. Nothing is sent on error.
// The challenge header must name server and carry challenge.
func (v *Verifier) rebuild(ctx context.Context, sr *SignedRequest, server string, challenge []byte) (*http.Request, error) {
	if sr.Method != http.MethodPost {
		return nil, fmt.Errorf("awsiam: method %q, want POST", sr.Method)
	}
	if sr.Path != "/" {
		return nil, fmt.Errorf("awsiam: path %q, want /", sr.Path)
	}
	if sr.Body != Body {
		return nil, errors.New("awsiam: body is not exactly the GetCallerIdentity request")
	}
	if !v.s.hosts[sr.Host] {
		return nil, fmt.Errorf("awsiam: host %q is not an allow-listed STS endpoint", sr.Host)
	}
	region, err := hostRegion(sr.Host)
	if err != nil {
		return nil, fmt.Errorf("awsiam: %w", err)
	}
	h := map[string]string{}
	for _, kv := range sr.Headers {
		name := strings.ToLower(kv[0])
		if !forwarded[name] {
			return nil, fmt.Errorf("awsiam: header %q is not allowed", kv[0])
		}
		if _, dup := h[name]; dup {
			return nil, fmt.Errorf("awsiam: header %q appears more than once", kv[0])
		}
		if kv[1] == "" || strings.ContainsFunc(kv[1], func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return nil, fmt.Errorf("awsiam: header %q has an empty or malformed value", kv[0])
		}
		h[name] = kv[1]
	}
	for _, need := range []string{"authorization", "x-amz-date", "content-type", "x-hallmark-challenge"} {
		if _, ok := h[need]; !ok {
			return nil, fmt.Errorf("awsiam: header %q is missing", need)
		}
	}
	if !slices.Contains(contentTypes, h["content-type"]) {
		return nil, fmt.Errorf("awsiam: content-type %q is not a form", h["content-type"])
	}
	if err := checkChallenge(h["x-hallmark-challenge"], server, challenge); err != nil {
		return nil, err
	}
	date, err := time.Parse("20060102T150405Z", h["x-amz-date"])
	if err != nil {
		return nil, fmt.Errorf("awsiam: X-Amz-Date %q is malformed", h["x-amz-date"])
	}
	if d := v.now().Sub(date); d > v.s.skew || d < -v.s.skew {
		return nil, fmt.Errorf("awsiam: X-Amz-Date %s is more than %s from the server's clock", h["x-amz-date"], v.s.skew)
	}
	if err := checkAuthorization(h, region, date); err != nil {
		return nil, err
	}

	target := "https://" + sr.Host + "/"
	if v.s.override != nil {
		target = v.s.override.Scheme + "://" + v.s.override.Host + "/"
	}
	out, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(Body))
	if err != nil {
		return nil, fmt.Errorf("awsiam: build request: %w", err)
	}
	out.Host = sr.Host
	for name, val := range h {
		out.Header.Set(name, val)
	}
	return out, nil
}

// checkChallenge requires the challenge header value to be exactly
// ChallengeValue(server, challenge), and says which part differs.
func checkChallenge(got, server string, challenge []byte) error {
	want := ChallengeValue(server, challenge)
	if subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1 {
		return nil
	}
	name, _, ok := strings.Cut(got, " ")
	if !ok {
		return errors.New("awsiam: challenge header does not name the server (want \"<server> <challenge>\"; is the agent older than the server?)")
	}
	if name != server {
		return fmt.Errorf("awsiam: challenge header names %s, this server is %s (signed for another deployment, or server_id differs between agent and server)", truncate(name), server)
	}
	return errors.New("awsiam: challenge header does not match the issued challenge")
}

var authzRE = lazyRegexp(`^AWS4-HMAC-SHA256 Credential=([A-Z0-9]{16,128})/([0-9]{8})/([a-z0-9-]{1,32})/sts/aws4_request, ?SignedHeaders=([a-z0-9;-]{1,512}), ?Signature=([0-9a-f]{64})$`)

// checkAuthorization requires a SigV4 header for sts in the host's region
// on the request's date, whose SignedHeaders cover exactly the forwarded
// headers plus host and content-length, and always the challenge.
func checkAuthorization(h map[string]string, region string, date time.Time) error {
	m := authzRE().FindStringSubmatch(h["authorization"])
	if m == nil {
		return errors.New("awsiam: Authorization is not a SigV4 header for sts")
	}
	if m[2] != date.Format("20060102") {
		return errors.New("awsiam: Authorization credential date differs from X-Amz-Date")
	}
	if m[3] != region {
		return fmt.Errorf("awsiam: Authorization is for region %q, host is in %q", m[3], region)
	}
	signed := map[string]bool{}
	for _, n := range strings.Split(m[4], ";") {
		if signed[n] {
			return fmt.Errorf("awsiam: SignedHeaders lists %q twice", n)
		}
		signed[n] = true
	}
	for _, need := range []string{"host", "x-amz-date", "x-hallmark-challenge"} {
		if !signed[need] {
			return fmt.Errorf("awsiam: SignedHeaders does not cover %q", need)
		}
	}
	for name := range h {
		if name != "authorization" && !signed[name] {
			return fmt.Errorf("awsiam: header %q is not signed", name)
		}
	}
	for name := range signed {
		if _, ok := h[name]; !ok && name != "host" && name != "content-length" {
			return fmt.Errorf("awsiam: signed header %q is not in the request", name)
		}
	}
	return nil
}

type callerIdentityResponse struct {
	XMLName xml.Name `xml:"GetCallerIdentityResponse"`
	Results []struct {
		Arn     []string `xml:"Arn"`
		UserID  []string `xml:"UserId"`
		Account []string `xml:"Account"`
	} `xml:"GetCallerIdentityResult"`
}

type stsErrorResponse struct {
	Error struct {
		Code string `xml:"Code"`
	} `xml:"Error"`
}

// callerARN is a parsed assumed-role ARN.
type callerARN struct {
	raw, partition, account, role, session string
}

func (v *Verifier) callSTS(req *http.Request) (callerARN, error) {
	resp, err := v.client.Do(req)
	if err != nil {
		return callerARN{}, fmt.Errorf("awsiam: call STS: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseSize+1))
	if err != nil {
		return callerARN{}, fmt.Errorf("awsiam: read STS answer: %w", err)
	}
	if len(body) > maxResponseSize {
		return callerARN{}, errors.New("awsiam: STS answer is too large")
	}
	return parseCallerIdentity(resp.StatusCode, body)
}

// parseCallerIdentity parses STS's answer: 200 and exactly one result with
// one Arn and one matching Account.
func parseCallerIdentity(status int, body []byte) (callerARN, error) {
	if status != http.StatusOK {
		var e stsErrorResponse
		code := "unknown"
		if xml.Unmarshal(body, &e) == nil && e.Error.Code != "" {
			code = e.Error.Code
		}
		return callerARN{}, fmt.Errorf("awsiam: STS answered %d (%.64q)", status, code)
	}
	var r callerIdentityResponse
	if err := xml.Unmarshal(body, &r); err != nil {
		return callerARN{}, fmt.Errorf("awsiam: STS answer: %w", err)
	}
	if len(r.Results) != 1 {
		return callerARN{}, fmt.Errorf("awsiam: STS answer has %d results, want 1", len(r.Results))
	}
	res := r.Results[0]
	if len(res.Arn) != 1 || len(res.Account) != 1 {
		return callerARN{}, errors.New("awsiam: STS answer does not hold exactly one Arn and Account")
	}
	arn, err := parseARN(strings.TrimSpace(res.Arn[0]))
	if err != nil {
		return callerARN{}, err
	}
	if arn.account != strings.TrimSpace(res.Account[0]) {
		return callerARN{}, errors.New("awsiam: STS answer's Account differs from its Arn")
	}
	return arn, nil
}

var arnRE = lazyRegexp(`^arn:(aws|aws-cn|aws-us-gov):sts::([0-9]{12}):assumed-role/([^/]+)/([^/]+)$`)

func parseARN(s string) (callerARN, error) {
	m := arnRE().FindStringSubmatch(s)
	if m == nil {
		return callerARN{}, fmt.Errorf("awsiam: caller %q is not an assumed role", truncate(s))
	}
	a := callerARN{raw: s, partition: m[1], account: m[2], role: m[3], session: m[4]}
	for _, seg := range []string{a.role, a.session} {
		if !nameRE().MatchString(seg) || seg == "." || seg == ".." {
			return callerARN{}, fmt.Errorf("awsiam: role or session name %q cannot be a SPIFFE path segment", truncate(seg))
		}
	}
	return a, nil
}

func truncate(s string) string {
	if len(s) > 128 {
		return s[:128] + "..."
	}
	return s
}

func (v *Verifier) result(arn callerARN, hint *ECSHint, req attestors.VerifyRequest) (attestors.Result, error) {
	if !v.s.accounts[arn.account] {
		return attestors.Result{}, fmt.Errorf("awsiam: account %s is not in the allow-list", arn.account)
	}
	if v.s.roles != nil && !v.s.roles[arn.role] {
		return attestors.Result{}, fmt.Errorf("awsiam: role %q is not in the allow-list", arn.role)
	}
	id, err := spiffeid.FromSegments(req.TrustDomain, "agent", Type, arn.account, arn.role, arn.session)
	if err != nil {
		return attestors.Result{}, fmt.Errorf("awsiam: agent ID: %w", err)
	}
	if req.Renewal && id != req.CurrentID {
		return attestors.Result{}, fmt.Errorf("awsiam: renewal: caller yields %q, agent is %q", id, req.CurrentID)
	}
	sels := []registration.Selector{
		{Type: Type, Value: "account:" + arn.account},
		{Type: Type, Value: "role:" + arn.role},
		{Type: Type, Value: "session:" + arn.session},
	}
	if v.cfg.ECSHints && hint != nil {
		for _, kv := range [][2]string{{"task_arn", hint.TaskARN}, {"cluster", hint.Cluster}, {"family", hint.Family}} {
			s := registration.Selector{Type: "aws_ecs_hint", Value: kv[0] + ":" + kv[1]}
			if kv[1] == "" {
				continue
			}
			if err := s.Validate(); err != nil {
				return attestors.Result{}, fmt.Errorf("awsiam: ECS hint: %w", err)
			}
			sels = append(sels, s)
		}
	}
	return attestors.Result{
		AgentID:     id,
		Selectors:   registration.SortSelectors(sels),
		CanReattest: true,
		Evidence:    map[string]string{"arn": arn.raw, "account": arn.account},
	}, nil
}
