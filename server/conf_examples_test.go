package server_test

import (
	"os"
	"strings"
	"testing"

	"github.com/hallmarkid/hallmark/attestors/awsiam"
	"github.com/hallmarkid/hallmark/attestors/k8spsat"
	"github.com/hallmarkid/hallmark/attestors/tpm"
	"github.com/hallmarkid/hallmark/internal/confexample"
	"github.com/hallmarkid/hallmark/internal/hclconf"
	"github.com/hallmarkid/hallmark/server"
	"github.com/hallmarkid/hallmark/server/bundlepub"
	"github.com/hallmarkid/hallmark/server/config"
)

// TestConfExamples: every block conf/server.hcl documents in comments is
// valid as written (strict decoding: a renamed key fails here), so the
// example file cannot drift from the code.
func TestConfExamples(t *testing.T) {
	src, err := os.ReadFile("../conf/server.hcl")
	if err != nil {
		t.Fatal(err)
	}
	blocks := confexample.Uncomment(string(src))
	kinds := map[string]bool{}
	for _, b := range blocks {
		kinds[confexample.Kind(b)] = true
	}
	for _, want := range []string{"node_attestor", "oidc", "bundle_publisher", "telemetry", "audit", "federation", "upstream_authority", "k8s_registrar"} {
		if !kinds[want] {
			t.Errorf("conf/server.hcl documents no %s block", want)
		}
	}
	full := string(src) + "\n" + strings.Join(blocks, "\n")
	full = strings.Replace(full, `server {`, "server {\n  jwt_issuer = \"https://oidc.example.org\"", 1)
	cfg, err := config.Parse("server.hcl", []byte(full))
	if err != nil {
		t.Fatal(err)
	}
	// Node attestors read their files (CA directories) when built: decode
	// their bodies strictly here, and validate the rest with the server.
	var rest []hclconf.Block
	for _, b := range cfg.NodeAttestors {
		var err error
		switch b.Kind {
		case tpm.Type:
			err = hclconf.DecodeBlock(b, &tpm.ServerConfig{})
		case awsiam.Type:
			err = hclconf.DecodeBlock(b, &awsiam.ServerConfig{})
		case k8spsat.Type:
			err = hclconf.DecodeBlock(b, &k8spsat.ServerConfig{})
		default:
			rest = append(rest, b)
			continue
		}
		if err != nil {
			t.Errorf("node_attestor %q: %v", b.Kind, err)
		}
	}
	cfg.NodeAttestors = rest
	// Bundle publishers build their clients (in-cluster Kubernetes, AWS):
	// decode their bodies strictly too.
	for _, b := range cfg.BundlePublishers {
		var v any
		switch b.Kind {
		case "file":
			v = &bundlepub.FileHCL{}
		case "k8s_configmap":
			v = &bundlepub.ConfigMapHCL{}
		case "aws_ssm":
			v = &bundlepub.SSMHCL{}
		default:
			t.Errorf("bundle_publisher %q: unknown kind", b.Kind)
			continue
		}
		if err := hclconf.DecodeBlock(b, v); err != nil {
			t.Errorf("bundle_publisher %q: %v", b.Kind, err)
		}
	}
	cfg.BundlePublishers = nil
	if err := server.Validate(cfg, nil); err != nil {
		t.Fatal(err)
	}
}
