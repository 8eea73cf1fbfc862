package awsiid

import (
	"fmt"
	"regexp"
	"sync"
)

// Type is the attestation type on the wire.
const Type = "aws_iid"

// ServerConfig configures the verifier. It is decoded from HCL.
type ServerConfig struct {
	// AccountIDs, when set, is the allow-list of AWS account IDs.
	AccountIDs []string `hcl:"account_ids,optional"`
	// AllowRSA1024Signature accepts documents carrying only the /signature
	// (RSA-1024 regional key) when the /rsa2048 PKCS#7 is absent.
	AllowRSA1024Signature bool `hcl:"allow_rsa1024_signature,optional"`
	// DescribeInstances calls ec2:DescribeInstances for the instance, which
	// must then be running; it also adds tag, VPC, subnet, security group
	// and instance profile selectors.
	DescribeInstances bool `hcl:"describe_instances,optional"`
	// EC2Endpoint overrides the EC2 endpoint (e.g. a VPC endpoint).
	EC2Endpoint string `hcl:"ec2_endpoint,optional"`
}

// AgentConfig configures the collector. It is decoded from HCL.
type AgentConfig struct {
	// IMDSEndpoint overrides the instance metadata endpoint
	// (default http://169.254.169.254).
	IMDSEndpoint string `hcl:"imds_endpoint,optional"`
}

var accountRE = lazyRegexp(`^[0-9]{12}$`)

func (c ServerConfig) accounts() (map[string]bool, error) {
	if c.AccountIDs == nil {
		return nil, nil
	}
	if len(c.AccountIDs) == 0 {
		return nil, fmt.Errorf("awsiid: config: account_ids is empty; omit it to allow every account")
	}
	m := map[string]bool{}
	for _, a := range c.AccountIDs {
		if !accountRE().MatchString(a) {
			return nil, fmt.Errorf("awsiid: config: account_ids: %q is not a 12-digit account ID", a)
		}
		m[a] = true
	}
	return m, nil
}

// lazyRegexp compiles expr on first use. The counted repetitions in these
// expressions compile to large programs; compiling them at package init
// cost every agent hundreds of KiB of heap for verifier-only checks.
func lazyRegexp(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}
