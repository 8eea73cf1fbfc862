package federation_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/hallmarkid/hallmark/internal/hclconf"
	"github.com/hallmarkid/hallmark/server/federation"
)

// parseFederation parses src, a file holding one federation block, as the
// server config would.
func parseFederation(t *testing.T, src string) (federation.Settings, error) {
	t.Helper()
	file, diags := hclconf.ParseFile("server.hcl", []byte(src))
	if diags.HasErrors() {
		t.Fatalf("parse: %v", diags)
	}
	content, diags := file.Body.Content(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "federation"}}})
	if diags.HasErrors() || len(content.Blocks) != 1 {
		t.Fatalf("content: %v", diags)
	}
	s, diags := federation.ParseHCL(content.Blocks[0].Body, td("hub.test"))
	return s, hclconf.DiagError("config", diags)
}

func TestParseHCL(t *testing.T) {
	t.Parallel()
	s, err := parseFederation(t, `
federation {
  bundle_endpoint {
    address      = "127.0.0.1"
    port         = 8443
    refresh_hint = "10m"
    profile "https_web" {
      serving_cert_file {
        cert_file_path     = "/etc/hallmark/endpoint.crt"
        key_file_path      = "/etc/hallmark/endpoint.key"
        file_sync_interval = "30s"
      }
    }
  }
  federates_with "spiffe://a.test" {
    bundle_endpoint_url = "https://a.test:8443"
    bundle_endpoint_profile "https_spiffe" {
      endpoint_spiffe_id = "spiffe://a.test/hallmark/server"
    }
    trust_bundle_path   = "/etc/hallmark/a.test.bundle"
    trust_bundle_format = "spiffe"
  }
  federates_with "b.test" {
    bundle_endpoint_url = "https://bundle.b.test/"
    bundle_endpoint_profile "https_web" {}
  }
}
`)
	if err != nil {
		t.Fatal(err)
	}
	want := federation.Settings{
		Endpoint: &federation.EndpointSettings{Address: "127.0.0.1:8443", Profile: federation.ProfileHTTPSWeb,
			CertFile: "/etc/hallmark/endpoint.crt", KeyFile: "/etc/hallmark/endpoint.key",
			CertReloadInterval: 30 * time.Second, RefreshHint: 10 * time.Minute},
		Relationships: []federation.Relationship{
			{TrustDomain: td("a.test"), URL: "https://a.test:8443", Profile: federation.ProfileHTTPSSPIFFE,
				EndpointID: id("spiffe://a.test/hallmark/server"), TrustBundlePath: "/etc/hallmark/a.test.bundle", TrustBundleFormat: "spiffe"},
			{TrustDomain: td("b.test"), URL: "https://bundle.b.test/", Profile: federation.ProfileHTTPSWeb},
		},
	}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("got  %+v %+v\nwant %+v %+v", *s.Endpoint, s.Relationships, *want.Endpoint, want.Relationships)
	}
	cfg := s.Endpoint.Config()
	if cfg.Address != "127.0.0.1:8443" || cfg.Profile != federation.ProfileHTTPSWeb || cfg.CertFile == "" {
		t.Errorf("Config() = %+v", cfg)
	}
}

func TestParseHCLDefaults(t *testing.T) {
	t.Parallel()
	s, err := parseFederation(t, `federation {
  bundle_endpoint {}
}`)
	if err != nil {
		t.Fatal(err)
	}
	want := &federation.EndpointSettings{Address: "0.0.0.0:443", Profile: federation.ProfileHTTPSSPIFFE,
		CertReloadInterval: time.Minute, RefreshHint: 5 * time.Minute}
	if !reflect.DeepEqual(s.Endpoint, want) || len(s.Relationships) != 0 {
		t.Fatalf("got %+v %+v", s.Endpoint, s.Relationships)
	}
	s, err = parseFederation(t, `federation {}`)
	if err != nil || s.Endpoint != nil {
		t.Fatalf("empty block: %+v, %v", s, err)
	}
}

func TestParseHCLErrors(t *testing.T) {
	t.Parallel()
	const web = `bundle_endpoint_profile "https_web" {}`
	tests := []struct {
		name, body, wantErr string
	}{
		{name: "unknown attribute", body: `foo = 1`, wantErr: `server.hcl:2,1-4: Unsupported argument`},
		{name: "unknown endpoint attribute", body: `bundle_endpoint { acme_email = "x" }`, wantErr: "Unsupported argument"},
		{name: "bad address", body: `bundle_endpoint { address = "example.org" }`, wantErr: "is not an IP address"},
		{name: "bad port", body: `bundle_endpoint { port = 70000 }`, wantErr: "out of range"},
		{name: "port as string", body: `bundle_endpoint { port = "8443" }`, wantErr: "number required"},
		{name: "bad refresh hint", body: `bundle_endpoint { refresh_hint = "5" }`, wantErr: "Invalid duration"},
		{name: "unknown endpoint profile", body: "bundle_endpoint {\n  profile \"http\" {}\n}", wantErr: `profile "http" is not`},
		{name: "two endpoint profiles", body: `bundle_endpoint {
  profile "https_spiffe" {}
  profile "https_spiffe" {}
}`, wantErr: "Duplicate profile block"},
		{name: "https_web without serving_cert_file", body: "bundle_endpoint {\n  profile \"https_web\" {}\n}", wantErr: "Missing serving_cert_file block"},
		{name: "https_web with acme", body: `bundle_endpoint {
  profile "https_web" {
    acme {}
  }
}`, wantErr: "ACME is not supported"},
		{name: "serving_cert_file without key", body: `bundle_endpoint {
  profile "https_web" {
    serving_cert_file { cert_file_path = "/c" }
  }
}`, wantErr: `"key_file_path" is required`},
		{name: "https_spiffe endpoint with settings", body: `bundle_endpoint {
  profile "https_spiffe" { x = 1 }
}`, wantErr: "Unsupported argument"},
		{name: "two bundle_endpoint blocks", body: "bundle_endpoint {}\nbundle_endpoint {}", wantErr: "Duplicate bundle_endpoint block"},
		{name: "invalid trust domain", body: `federates_with "Other.Org" {
  bundle_endpoint_url = "https://x"
  ` + web + `
}`, wantErr: "Invalid trust domain"},
		{name: "own trust domain", body: `federates_with "hub.test" {
  bundle_endpoint_url = "https://x"
  ` + web + `
}`, wantErr: "this server's own trust domain"},
		{name: "duplicate trust domain", body: `federates_with "a.test" {
  bundle_endpoint_url = "https://x"
  ` + web + `
}
federates_with "spiffe://a.test" {
  bundle_endpoint_url = "https://y"
  ` + web + `
}`, wantErr: "already configured at server.hcl:2"},
		{name: "no URL", body: `federates_with "a.test" {
  ` + web + `
}`, wantErr: `"bundle_endpoint_url" is required`},
		{name: "http URL", body: `federates_with "a.test" {
  bundle_endpoint_url = "http://a.test"
  ` + web + `
}`, wantErr: "not an https:// URL"},
		{name: "no profile", body: `federates_with "a.test" {
  bundle_endpoint_url = "https://a.test"
}`, wantErr: "Missing bundle_endpoint_profile block"},
		{name: "unknown profile", body: `federates_with "a.test" {
  bundle_endpoint_url = "https://a.test"
  bundle_endpoint_profile "spiffe" {}
}`, wantErr: `bundle_endpoint_profile "spiffe" is not`},
		{name: "https_spiffe without endpoint ID", body: `federates_with "a.test" {
  bundle_endpoint_url = "https://a.test"
  trust_bundle_path = "/b"
  bundle_endpoint_profile "https_spiffe" {}
}`, wantErr: `"endpoint_spiffe_id" is required`},
		{name: "https_spiffe endpoint ID in another trust domain", body: `federates_with "a.test" {
  bundle_endpoint_url = "https://a.test"
  trust_bundle_path = "/b"
  bundle_endpoint_profile "https_spiffe" { endpoint_spiffe_id = "spiffe://b.test/server" }
}`, wantErr: `not in trust domain "a.test"`},
		{name: "https_spiffe endpoint ID invalid", body: `federates_with "a.test" {
  bundle_endpoint_url = "https://a.test"
  trust_bundle_path = "/b"
  bundle_endpoint_profile "https_spiffe" { endpoint_spiffe_id = "spiffe://a.test/../x" }
}`, wantErr: "Invalid SPIFFE ID"},
		{name: "https_spiffe without trust bundle", body: `federates_with "a.test" {
  bundle_endpoint_url = "https://a.test"
  bundle_endpoint_profile "https_spiffe" { endpoint_spiffe_id = "spiffe://a.test/server" }
}`, wantErr: "https_spiffe needs trust_bundle_path"},
		{name: "https_web profile with an endpoint ID", body: `federates_with "a.test" {
  bundle_endpoint_url = "https://a.test"
  bundle_endpoint_profile "https_web" { endpoint_spiffe_id = "spiffe://a.test/server" }
}`, wantErr: "Unsupported argument"},
		{name: "bad trust bundle format", body: `federates_with "a.test" {
  bundle_endpoint_url = "https://a.test"
  trust_bundle_path = "/b"
  trust_bundle_format = "der"
  ` + web + `
}`, wantErr: `trust_bundle_format "der" is not one of spiffe, pem`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseFederation(t, "federation {\n"+tt.body+"\n}\n")
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), "server.hcl:") {
				t.Errorf("error without a position: %v", err)
			}
		})
	}
}
