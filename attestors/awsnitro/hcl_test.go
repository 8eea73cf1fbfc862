package awsnitro_test

import (
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"

	"github.com/hallmarkid/hallmark/attestors/awsnitro"
)

func TestHCLConfig(t *testing.T) {
	src := `
max_age     = "2m"
clock_skew  = "10s"
allow_debug = false
pcr0        = ["` + strings.Repeat("ab", 48) + `"]
pcr8        = ["` + strings.Repeat("cd", 48) + `"]
`
	f, diags := hclparse.NewParser().ParseHCL([]byte(src), "server.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	var cfg awsnitro.ServerConfig
	if diags := gohcl.DecodeBody(f.Body, nil, &cfg); diags.HasErrors() {
		t.Fatal(diags)
	}
	if _, err := awsnitro.NewVerifier(cfg, nil); err != nil {
		t.Fatal(err)
	}
	f, _ = hclparse.NewParser().ParseHCL([]byte(`maxage = "1m"`), "bad.hcl")
	if diags := gohcl.DecodeBody(f.Body, nil, &cfg); !diags.HasErrors() {
		t.Fatal("unknown key accepted")
	}
	f, _ = hclparse.NewParser().ParseHCL([]byte(`device = "/dev/nsm"`), "agent.hcl")
	var acfg awsnitro.AgentConfig
	if diags := gohcl.DecodeBody(f.Body, nil, &acfg); diags.HasErrors() || acfg.Device != "/dev/nsm" {
		t.Fatal(diags)
	}
}
