package ca

import (
	"fmt"

	"github.com/hallmarkid/hallmark/internal/hclconf"
)

// UpstreamKindDisk is the kind of the upstream_authority block that reads
// an existing CA's certificate and key from files.
const UpstreamKindDisk = "disk"

// UpstreamDiskHCL is the body of the server's
//
//	upstream_authority "disk" {
//	  cert_file_path   = "/etc/hallmark/upstream.crt" # CA certificate, then its chain (PEM)
//	  key_file_path    = "/etc/hallmark/upstream.key" # its private key (PEM, mode 0600)
//	  bundle_file_path = "/etc/hallmark/roots.pem"    # optional trust anchors (PEM)
//	}
type UpstreamDiskHCL struct {
	CertFilePath   string `hcl:"cert_file_path"`
	KeyFilePath    string `hcl:"key_file_path"`
	BundleFilePath string `hcl:"bundle_file_path,optional"`
}

// DecodeUpstreamHCL strictly decodes an upstream_authority block (unknown
// keys and kinds are errors carrying file:line).
func DecodeUpstreamHCL(b hclconf.Block) (UpstreamDiskHCL, error) {
	var u UpstreamDiskHCL
	if b.Kind != UpstreamKindDisk {
		return u, fmt.Errorf("ca: %s: upstream_authority %q is not supported (want %q)", b.Pos(), b.Kind, UpstreamKindDisk)
	}
	if err := hclconf.DecodeBlock(b, &u); err != nil {
		return u, fmt.Errorf("ca: %w", err)
	}
	for _, f := range []struct{ name, v string }{
		{"cert_file_path", u.CertFilePath}, {"key_file_path", u.KeyFilePath},
	} {
		if f.v == "" {
			return u, fmt.Errorf("ca: %s: upstream_authority %q: %s must not be empty", b.Pos(), b.Kind, f.name)
		}
	}
	return u, nil
}

// Apply sets the upstream fields of cfg.
func (u UpstreamDiskHCL) Apply(cfg *Config) {
	cfg.UpstreamCertPath, cfg.UpstreamKeyPath, cfg.UpstreamBundlePath = u.CertFilePath, u.KeyFilePath, u.BundleFilePath
}
