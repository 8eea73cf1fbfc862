package tpm_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"

	tpmatt "github.com/hallmarkid/hallmark/attestors/tpm"
	"github.com/hallmarkid/hallmark/internal/hclconf"
	"github.com/hallmarkid/hallmark/tpm/tpmtest"
)

func decodeHCL(t *testing.T, src string, v any) error {
	t.Helper()
	f, diags := hclconf.ParseFile("test.hcl", []byte(src))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	blocks := hclconf.Labelled(mustBlocks(t, f.Body), "node_attestor", &diags)
	if len(blocks) != 1 {
		t.Fatalf("blocks: %v %v", blocks, diags)
	}
	return hclconf.DecodeBlock(blocks[0], v)
}

func TestConfigHCL(t *testing.T) {
	var sc tpmatt.ServerConfig
	err := decodeHCL(t, `node_attestor "tpm" {
  ek_ca_dir = "/etc/hallmark/ek-ca"
  ek_hashes = ["`+strings.Repeat("ab", 32)+`"]
  pcr_bank = "sha256"
  pcrs = [0, 2, 4, 7]
  pcr_policy {
    pcr    = 7
    values = ["`+strings.Repeat("00", 32)+`"]
  }
  pcr_policy {
    pcr    = 4
    values = ["`+strings.Repeat("11", 32)+`", "`+strings.Repeat("22", 32)+`"]
  }
  require_secure_boot = true
  require_event_log = true
  quote_timeout = "5s"
  reattest_interval = "1h"
}`, &sc)
	checkErr(t, err, "")
	if sc.EKCADir != "/etc/hallmark/ek-ca" || len(sc.PCRs) != 4 || len(sc.PCRPolicy) != 2 || sc.PCRPolicy[1].PCR != 4 ||
		!sc.RequireSecureBoot || sc.ReattestInterval != "1h" || sc.QuoteTimeout != "5s" || len(sc.EKHashes) != 1 {
		t.Fatalf("decoded %+v", sc)
	}
	var ac tpmatt.AgentConfig
	err = decodeHCL(t, `node_attestor "tpm" {
  device = "unix:/run/swtpm.sock"
  ak_type = "rsa"
  ek_type = "ecc"
  event_log = "none"
}`, &ac)
	checkErr(t, err, "")
	if ac != (tpmatt.AgentConfig{Device: "unix:/run/swtpm.sock", AKType: "rsa", EKType: "ecc", EventLog: "none"}) {
		t.Fatalf("decoded %+v", ac)
	}
	err = decodeHCL(t, `node_attestor "tpm" { pcr_polcy = 1 }`, &sc)
	checkErr(t, err, "pcr_polcy")
}

func TestNewVerifierConfig(t *testing.T) {
	dir := tpmtest.SharedCA(t, "a").WriteDir(t)
	empty := t.TempDir()
	junk := t.TempDir()
	os.WriteFile(filepath.Join(junk, "x.pem"), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o644)
	// A directory of intermediates only: every EK certificate would fail to
	// chain, so the server must not start with it.
	inter, err := tpmtest.SharedCA(t, "a").Intermediate("Hallmark Test EK intermediate")
	if err != nil {
		t.Fatal(err)
	}
	interOnly := inter.WriteDir(t)
	h := strings.Repeat("ab", 32)
	zero := strings.Repeat("00", 32)
	for _, tc := range []struct {
		name    string
		cfg     tpmatt.ServerConfig
		wantErr string
	}{
		{name: "CA dir", cfg: tpmatt.ServerConfig{EKCADir: dir}},
		{name: "allow-list", cfg: tpmatt.ServerConfig{EKHashes: []string{h}}},
		{name: "neither", cfg: tpmatt.ServerConfig{}, wantErr: "set ek_ca_dir or ek_hashes"},
		{name: "missing CA dir", cfg: tpmatt.ServerConfig{EKCADir: "/nonexistent"}, wantErr: "ek_ca_dir"},
		{name: "empty CA dir", cfg: tpmatt.ServerConfig{EKCADir: empty}, wantErr: "holds no certificates"},
		{name: "bad CA file", cfg: tpmatt.ServerConfig{EKCADir: junk}, wantErr: "x.pem"},
		{name: "CA dir without a root", cfg: tpmatt.ServerConfig{EKCADir: interOnly}, wantErr: "holds no self-signed root"},
		{name: "CA dir without a root, with ek_hashes", cfg: tpmatt.ServerConfig{EKCADir: interOnly, EKHashes: []string{h}}, wantErr: "holds no self-signed root"},
		{name: "sha1 bank without opt-in", cfg: tpmatt.ServerConfig{EKHashes: []string{h}, PCRBank: "sha1"}, wantErr: "allow_sha1_pcr_bank"},
		{name: "sha1 bank with opt-in", cfg: tpmatt.ServerConfig{EKHashes: []string{h}, PCRBank: "sha1", AllowSHA1PCRBank: true,
			PCRPolicy: []tpmatt.PCRPolicy{{PCR: 7, Values: []string{strings.Repeat("00", 20)}}}}},
		{name: "sha1 policy value in the sha256 bank", cfg: tpmatt.ServerConfig{EKHashes: []string{h}, PCRPolicy: []tpmatt.PCRPolicy{{PCR: 7, Values: []string{strings.Repeat("00", 20)}}}},
			wantErr: "is a SHA-1 value, but pcr_bank is sha256"},
		{name: "opt-in alone changes nothing", cfg: tpmatt.ServerConfig{EKHashes: []string{h}, AllowSHA1PCRBank: true,
			PCRPolicy: []tpmatt.PCRPolicy{{PCR: 7, Values: []string{strings.Repeat("00", 20)}}}}, wantErr: "is a SHA-1 value"},
		{name: "bad EK hash", cfg: tpmatt.ServerConfig{EKHashes: []string{"abc"}}, wantErr: "not a hex SHA-256"},
		{name: "unknown bank", cfg: tpmatt.ServerConfig{EKHashes: []string{h}, PCRBank: "md5"}, wantErr: "unknown PCR bank"},
		{name: "PCR out of range", cfg: tpmatt.ServerConfig{EKHashes: []string{h}, PCRs: []int{24}}, wantErr: "out of range"},
		{name: "PCR twice", cfg: tpmatt.ServerConfig{EKHashes: []string{h}, PCRs: []int{1, 1}}, wantErr: "listed twice"},
		{name: "policy PCR not quoted", cfg: tpmatt.ServerConfig{EKHashes: []string{h}, PCRPolicy: []tpmatt.PCRPolicy{{PCR: 16, Values: []string{zero}}}}, wantErr: "PCR 16 is not in pcrs"},
		{name: "policy value wrong size", cfg: tpmatt.ServerConfig{EKHashes: []string{h}, PCRPolicy: []tpmatt.PCRPolicy{{PCR: 7, Values: []string{"00"}}}}, wantErr: "is not 32 hex bytes"},
		{name: "policy without values", cfg: tpmatt.ServerConfig{EKHashes: []string{h}, PCRPolicy: []tpmatt.PCRPolicy{{PCR: 7}}}, wantErr: "has no values"},
		{name: "policy twice", cfg: tpmatt.ServerConfig{EKHashes: []string{h}, PCRPolicy: []tpmatt.PCRPolicy{{PCR: 7, Values: []string{zero}}, {PCR: 7, Values: []string{zero}}}}, wantErr: "two blocks"},
		{name: "secure boot without PCR 7", cfg: tpmatt.ServerConfig{EKHashes: []string{h}, PCRs: []int{0}, RequireSecureBoot: true}, wantErr: "needs PCR 7"},
		{name: "bad quote timeout", cfg: tpmatt.ServerConfig{EKHashes: []string{h}, QuoteTimeout: "forever"}, wantErr: "quote_timeout"},
		{name: "reattest too short", cfg: tpmatt.ServerConfig{EKHashes: []string{h}, ReattestInterval: "1s"}, wantErr: "reattest_interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tpmatt.NewVerifier(tc.cfg, nil)
			checkErr(t, err, tc.wantErr)
		})
	}
}

func TestNewCollectorConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     tpmatt.AgentConfig
		dir     string
		wantErr string
	}{
		{name: "no data dir", cfg: tpmatt.AgentConfig{Device: "unix:/nonexistent"}, wantErr: "no data directory"},
		{name: "bad AK type", cfg: tpmatt.AgentConfig{AKType: "dsa"}, dir: t.TempDir(), wantErr: "ak_type"},
		{name: "bad EK type", cfg: tpmatt.AgentConfig{EKType: "dsa"}, dir: t.TempDir(), wantErr: "ek_type"},
		{name: "no TPM", cfg: tpmatt.AgentConfig{Device: "unix:/nonexistent/sock"}, dir: t.TempDir(), wantErr: "connect"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tpmatt.NewCollector(tc.cfg, tc.dir, nil)
			checkErr(t, err, tc.wantErr)
		})
	}
}

func mustBlocks(t *testing.T, body hcl.Body) hcl.Blocks {
	t.Helper()
	content, diags := body.Content(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "node_attestor", LabelNames: []string{"kind"}}}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return content.Blocks
}
