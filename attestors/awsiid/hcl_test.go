package awsiid_test

import (
	"testing"

	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"

	"github.com/hallmarkid/hallmark/attestors/awsiid"
)

func TestHCLConfig(t *testing.T) {
	src := `
account_ids             = ["123456789012"]
allow_rsa1024_signature = false
describe_instances      = false
`
	f, diags := hclparse.NewParser().ParseHCL([]byte(src), "server.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	var cfg awsiid.ServerConfig
	if diags := gohcl.DecodeBody(f.Body, nil, &cfg); diags.HasErrors() {
		t.Fatal(diags)
	}
	if _, err := awsiid.NewVerifier(cfg, nil); err != nil {
		t.Fatal(err)
	}
	f, _ = hclparse.NewParser().ParseHCL([]byte(`imds_endpoint = "http://127.0.0.1:1"`), "agent.hcl")
	var acfg awsiid.AgentConfig
	if diags := gohcl.DecodeBody(f.Body, nil, &acfg); diags.HasErrors() || acfg.IMDSEndpoint == "" {
		t.Fatal(diags)
	}
}
