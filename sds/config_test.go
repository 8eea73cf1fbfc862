package sds_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hallmarkid/hallmark/agent/cache"
	"github.com/hallmarkid/hallmark/agent/workloadattest"
	"github.com/hallmarkid/hallmark/sds"
)

func TestHCLConfig(t *testing.T) {
	cfg := sds.HCLConfig{}.Config()
	if cfg.DefaultSVIDName != "default" || cfg.DefaultBundleName != "ROOTCA" || cfg.DefaultAllBundlesName != "ALL" ||
		!cfg.AllowMissingSecurityHeader || cfg.ExtraSocketRequireSecurityHeader || cfg.FileDir != "" {
		t.Fatalf("defaults: %+v", cfg)
	}
	tests := []struct {
		name    string
		c       sds.HCLConfig
		wantErr string
	}{
		{name: "empty"},
		{name: "istio socket", c: sds.HCLConfig{ExtraSocketPath: "/run/secrets/workload-spiffe-uds/socket", FileDir: "/etc/certs"}},
		{name: "duplicate names", c: sds.HCLConfig{DefaultBundleName: "ALL"}, wantErr: "are both"},
		{name: "name like an ID", c: sds.HCLConfig{DefaultSVIDName: "spiffe://x"}, wantErr: "SPIFFE ID"},
		{name: "name like a file", c: sds.HCLConfig{DefaultBundleName: "file-root:x"}, wantErr: "Istio file name"},
		{name: "wildcard name", c: sds.HCLConfig{DefaultAllBundlesName: "*"}, wantErr: "wildcard"},
		{name: "relative file_dir", c: sds.HCLConfig{FileDir: "certs"}, wantErr: "absolute"},
		{name: "relative socket", c: sds.HCLConfig{ExtraSocketPath: "sds.sock"}, wantErr: "absolute"},
		{name: "long socket", c: sds.HCLConfig{ExtraSocketPath: "/" + strings.Repeat("s", 107)}, wantErr: "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.c.Validate(); !errContains(err, tt.wantErr) {
				t.Fatalf("Validate() = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	att := workloadattest.New(nil)
	tests := []struct {
		name    string
		cfg     sds.Config
		wantErr string
	}{
		{name: "ok", cfg: sds.Config{Cache: cache.New(), Attestor: att}},
		{name: "no cache", cfg: sds.Config{Attestor: att}, wantErr: "Cache is required"},
		{name: "no attestor", cfg: sds.Config{Cache: cache.New()}, wantErr: "Attestor is required"},
		{name: "missing file_dir", cfg: sds.Config{Cache: cache.New(), Attestor: att, FileDir: "/nonexistent/certs"}, wantErr: "file_dir"},
		{name: "file_dir is a file", cfg: sds.Config{Cache: cache.New(), Attestor: att, FileDir: file}, wantErr: "not a directory"},
		{name: "same names", cfg: sds.Config{Cache: cache.New(), Attestor: att, DefaultSVIDName: "x", DefaultBundleName: "x"}, wantErr: "are both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sds.New(tt.cfg)
			if !errContains(err, tt.wantErr) {
				t.Fatalf("New() = %v, want %q", err, tt.wantErr)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "sds: ") {
				t.Fatalf("error %q lacks the package prefix", err)
			}
		})
	}
}
