package config_test

import (
	"os"
	"testing"

	"github.com/hallmarkid/hallmark/agent/config"
)

func FuzzParse(f *testing.F) {
	example, err := os.ReadFile("testdata/agent.hcl")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example, "")
	for _, s := range []string{
		"",
		agt(""),
		agt("", joinTokenBlock),
		agt(`join_token = "x"`, `node_attestor "tpm" {}`),
		agt("insecure_bootstrap = \"true\"\nserver_address = 1\nbogus = [1, {a = 2}]", joinTokenBlock, joinTokenBlock),
		agt("", `workload_attestor "unix" { discover_workload_path = false }`, `workload_attestor "unix" {}`),
		"agent {\n  trust_domain = \"${a}\"\n  data_dir = <<EOT\nx\nEOT\n}\n",
		"agent { trust_domain = upper(\"x\") data_dir = 1 + true }",
		"agent \"label\" {}\nnode_attestor a b {}\nworkload_attestor {}\n",
		"\x00agent {",
		bare(`trust_domain = "example.org"`, `server_address = "127.0.0.1:8081"`, `data_dir = "/d"`,
			`trust_bundle_url = "http://127.0.0.1:1/b"`, `trust_bundle_url_allow_loopback_http = true`, `trust_bundle_format = "spiffe"`),
		bare(`trust_domain = "example.org"`, `server_address = "127.0.0.1:8081"`, `data_dir = "/d"`,
			`trust_bundle_url = "https://[::1%25lo]/b"`),
	} {
		f.Add([]byte(s), "")
		f.Add([]byte(s), "tok")
	}
	f.Fuzz(func(t *testing.T, src []byte, token string) {
		c, err := config.Parse("fuzz.hcl", src, config.WithJoinToken(token))
		if (c == nil) == (err == nil) {
			t.Fatalf("Parse returned config %v and error %v", c, err)
		}
		if err != nil {
			_ = err.Error()
			return
		}
		if c.TrustDomain.IsZero() || c.DataDir == "" || c.ServerAddress == "" || c.NodeAttestor.Kind == "" ||
			(c.TrustBundlePath == "" && c.TrustBundleURL == "") != c.InsecureBootstrap ||
			c.TrustBundlePath != "" && c.TrustBundleURL != "" ||
			c.TrustBundleURL != "" && config.CheckTrustBundleURL(c.TrustBundleURL, c.TrustBundleURLAllowLoopbackHTTP) != nil {
			t.Fatalf("accepted an invalid config: %+v", c)
		}
		if token != "" && c.JoinToken != token {
			t.Fatalf("join token %q, want %q", c.JoinToken, token)
		}
	})
}
