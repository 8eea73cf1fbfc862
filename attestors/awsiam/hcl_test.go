package awsiam_test

import (
	"testing"

	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"

	"github.com/hallmarkid/hallmark/attestors/awsiam"
)

func TestHCLConfig(t *testing.T) {
	src := `
account_ids = ["123456789012"]
role_names  = ["task-role"]
sts_hosts   = ["sts.us-east-1.amazonaws.com"]
clock_skew  = "2m"
ecs_hints   = true
`
	f, diags := hclparse.NewParser().ParseHCL([]byte(src), "server.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	var cfg awsiam.ServerConfig
	if diags := gohcl.DecodeBody(f.Body, nil, &cfg); diags.HasErrors() {
		t.Fatal(diags)
	}
	if _, err := awsiam.NewVerifier(cfg, nil); err != nil {
		t.Fatal(err)
	}
	// account_ids is required by the schema itself.
	f, _ = hclparse.NewParser().ParseHCL([]byte(`role_names = ["x"]`), "bad.hcl")
	if diags := gohcl.DecodeBody(f.Body, nil, &awsiam.ServerConfig{}); !diags.HasErrors() {
		t.Fatal("missing account_ids accepted")
	}
	f, _ = hclparse.NewParser().ParseHCL([]byte("sts_region = \"eu-west-1\"\necs_task_metadata = true"), "agent.hcl")
	var acfg awsiam.AgentConfig
	if diags := gohcl.DecodeBody(f.Body, nil, &acfg); diags.HasErrors() || acfg.Region != "eu-west-1" {
		t.Fatal(diags)
	}
}
