package ca_test

import (
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"

	"github.com/hallmarkid/hallmark/internal/hclconf"
	"github.com/hallmarkid/hallmark/server/ca"
)

// upstreamBlock parses src and returns its one upstream_authority block.
func upstreamBlock(t *testing.T, src string) hclconf.Block {
	t.Helper()
	f, diags := hclconf.ParseFile("server.hcl", []byte(src))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	content, diags := f.Body.Content(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "upstream_authority", LabelNames: []string{"kind"}}}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	blocks := hclconf.Labelled(content.Blocks, "upstream_authority", &diags)
	if diags.HasErrors() || len(blocks) != 1 {
		t.Fatalf("%d blocks: %v", len(blocks), diags)
	}
	return blocks[0]
}

func TestDecodeUpstreamHCL(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		want    ca.UpstreamDiskHCL
		wantErr string
	}{
		{name: "all keys", src: `upstream_authority "disk" {
  cert_file_path   = "/etc/hm/up.crt"
  key_file_path    = "/etc/hm/up.key"
  bundle_file_path = "/etc/hm/roots.pem"
}`, want: ca.UpstreamDiskHCL{CertFilePath: "/etc/hm/up.crt", KeyFilePath: "/etc/hm/up.key", BundleFilePath: "/etc/hm/roots.pem"}},
		{name: "no bundle", src: `upstream_authority "disk" {
  cert_file_path = "a"
  key_file_path  = "b"
}`, want: ca.UpstreamDiskHCL{CertFilePath: "a", KeyFilePath: "b"}},
		{name: "unknown key", src: `upstream_authority "disk" {
  cert_file_path = "a"
  key_file_path  = "b"
  key_password   = "x"
}`, wantErr: "server.hcl:4"},
		{name: "missing key_file_path", src: `upstream_authority "disk" {
  cert_file_path = "a"
}`, wantErr: `"key_file_path" is required`},
		{name: "empty cert_file_path", src: `upstream_authority "disk" {
  cert_file_path = ""
  key_file_path  = "b"
}`, wantErr: "cert_file_path must not be empty"},
		{name: "number for a path", src: `upstream_authority "disk" {
  cert_file_path = 1
  key_file_path  = "b"
}`, wantErr: "server.hcl:2"},
		{name: "unknown kind", src: `upstream_authority "vault" {
  cert_file_path = "a"
  key_file_path  = "b"
}`, wantErr: `upstream_authority "vault" is not supported (want "disk")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ca.DecodeUpstreamHCL(upstreamBlock(t, tt.src))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			var cfg ca.Config
			got.Apply(&cfg)
			if cfg.UpstreamCertPath != tt.want.CertFilePath || cfg.UpstreamKeyPath != tt.want.KeyFilePath || cfg.UpstreamBundlePath != tt.want.BundleFilePath {
				t.Fatalf("Apply: %+v", cfg)
			}
		})
	}
}
