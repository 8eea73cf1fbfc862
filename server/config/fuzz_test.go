package config_test

import (
	"os"
	"testing"

	"github.com/hallmarkid/hallmark/server/config"
)

func FuzzParse(f *testing.F) {
	example, err := os.ReadFile("testdata/server.hcl")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	for _, s := range []string{
		"",
		srv(""),
		srv("bind_port = \"8081\"\nca_ttl = 3600\nbogus = [1, {a = 2}]"),
		srv("", "datastore {\n  type = \"postgres\"\n}", `node_attestor "tpm" { x = 1 }`),
		srv("", "server {}", `node_attestor "" {}`, "datastore {}", "datastore {}"),
		srv("jwt_issuer = \"https://o.example.org\"\njwt_key_ttl = \"1h\"", "oidc {\n  listen_address = \"127.0.0.1:1\"\n  domains = [\"o.example.org\"]\n}"),
		srv("jwt_issuer = \"http://[::1]:80/x\"\ndefault_jwt_svid_ttl = \"30h\"", "oidc {\n  listen_address = \"[::]:443\"\n  cert_file_path = \"\"\n}"),
		"server {\n  trust_domain = \"${a}\"\n  data_dir = <<EOT\nx\nEOT\n}\n",
		"server { trust_domain = upper(\"x\") data_dir = 1 + true }",
		"server {\n  log_level = [for x in [1]: x]\n  ca_ttl = \"1h\" == \"1h\" ? \"2h\" : null\n}\n",
		"server \"label\" {}\nnode_attestor a b {}\n",
		"\xff\xfe{",
		srv("attestation_timeout = \"1m\"\nattestation_first_message_timeout = \"5s\"\nmax_inflight_attestations = 8\nattestation_rate_per_source = 0.5\n" +
			"attestation_burst_per_source = 3\nmax_unauthenticated_connections = 10\nmax_unauthenticated_connections_per_source = 10\nmax_unauthenticated_message_size = \"64KiB\""),
		srv("max_unauthenticated_message_size = \"99999999999MiB\"\nattestation_rate_per_source = -0.0\nmax_unauthenticated_connections = 1"),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		c, err := config.Parse("fuzz.hcl", src)
		if (c == nil) == (err == nil) {
			t.Fatalf("Parse returned config %v and error %v", c, err)
		}
		if err != nil {
			_ = err.Error()
			return
		}
		if c.TrustDomain.IsZero() || c.DataDir == "" || c.DefaultX509SVIDTTL >= c.CATTL || c.AgentSVIDTTL >= c.CATTL {
			t.Fatalf("accepted an invalid config: %+v", c)
		}
		if c.DefaultJWTSVIDTTL >= c.JWTKeyTTL || c.DefaultJWTSVIDTTL > config.MaxJWTSVIDTTL || c.JWTKeyType.JWTAlgorithm() == "" {
			t.Fatalf("accepted invalid JWT settings: %+v", c)
		}
		if l := c.NodeAPI; l.FirstMessageTimeout > l.AttestationTimeout || l.FirstMessageTimeout <= 0 || l.MaxInflightAttestations < 1 ||
			!(l.RatePerSource > 0) || l.BurstPerSource < 1 || l.MaxConnsPerSource < 1 || l.MaxConnsPerSource > l.MaxConns ||
			l.MaxMessageSize < config.MinUnauthMessageSize || l.MaxMessageSize > config.MaxUnauthMessageSize {
			t.Fatalf("accepted invalid Node API limits: %+v", l)
		}
		if o := c.OIDC; o != nil && (c.JWTIssuer == "" || o.ListenAddress == "" || len(o.Domains) == 0 || (o.CertFile == "") != (o.KeyFile == "")) {
			t.Fatalf("accepted an invalid oidc block: %+v %+v", c, o)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	src, err := os.ReadFile("testdata/server.hcl")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := config.Parse("server.hcl", src); err != nil {
			b.Fatal(err)
		}
	}
}
