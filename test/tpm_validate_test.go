package test

import (
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/test/testenv"
	"github.com/hallmarkid/hallmark/tpm/tpmtest"
)

// `hallmark-server validate` (and `run`) refuse TPM trust settings that
// would start a server which rejects every EK, or trusts what it should
// not: an ek_ca_dir without a self-signed root, an EK CRL that is not
// signed by a configured CA or is out of date, the SHA-1 PCR bank without
// the opt-in. Each refusal names the setting, the file and the line.
func TestServerValidateTPMTrust(t *testing.T) {
	env := testenv.New(t)
	root, err := tpmtest.NewCA("validate root")
	must(t, err)
	inter, err := root.Intermediate("validate intermediate")
	must(t, err)
	stranger, err := tpmtest.NewCA("validate stranger")
	must(t, err)
	now := time.Now()
	crlDir := func(name string, crl []byte) string {
		t.Helper()
		dir := filepath.Join(env.Dir, name)
		must(t, os.MkdirAll(dir, 0o755))
		must(t, os.WriteFile(filepath.Join(dir, "ek.crl"), crl, 0o644))
		return dir
	}
	goodCRL := crlDir("crl-good", root.CRL(t, 1, now.Add(-time.Hour), now.Add(24*time.Hour), big.NewInt(7)))
	strangerCRL := crlDir("crl-stranger", stranger.CRL(t, 1, now.Add(-time.Hour), now.Add(24*time.Hour), big.NewInt(7)))
	expiredCRL := crlDir("crl-expired", root.CRL(t, 1, now.Add(-48*time.Hour), now.Add(-24*time.Hour), big.NewInt(7)))
	rootDir, interDir := root.WriteDir(t), inter.WriteDir(t)

	tests := []struct {
		name    string
		block   string
		wantErr string // empty: valid
	}{
		{name: "root, CRL, SHA-1 opted in", block: `ek_ca_dir = "` + rootDir + `"
  ek_crl_dir = "` + goodCRL + `"
  pcr_bank = "sha1"
  allow_sha1_pcr_bank = true`},
		{name: "intermediates only", block: `ek_ca_dir = "` + interDir + `"`, wantErr: "holds no self-signed root"},
		{name: "CRL of another CA", block: `ek_ca_dir = "` + rootDir + `"
  ek_crl_dir = "` + strangerCRL + `"`, wantErr: "not signed by a certificate in ek_ca_dir"},
		{name: "expired CRL", block: `ek_ca_dir = "` + rootDir + `"
  ek_crl_dir = "` + expiredCRL + `"`, wantErr: "expired"},
		{name: "SHA-1 bank without the opt-in", block: `ek_ca_dir = "` + rootDir + `"
  pcr_bank = "sha1"`, wantErr: "allow_sha1_pcr_bank"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dataDir := filepath.Join(env.Dir, "data", strings.Repeat("x", i+1))
			cfg := filepath.Join(env.Dir, "tpm.hcl")
			must(t, os.WriteFile(cfg, []byte(`server {
  trust_domain = "example.org"
  data_dir     = "`+dataDir+`"
  socket_path  = "`+filepath.Join(env.Dir, "admin.sock")+`"
}
node_attestor "tpm" {
  `+tc.block+`
}
`), 0o600))
			cmds := []string{"validate"}
			if tc.wantErr != "" {
				cmds = append(cmds, "run")
			}
			for _, cmd := range cmds {
				out, err := env.CLI("hallmark-server", cmd, "-config", cfg)
				if tc.wantErr == "" {
					if err != nil || !strings.Contains(out, "is valid") {
						t.Fatalf("%s: %v\n%s", cmd, err, out)
					}
					continue
				}
				if err == nil || !strings.Contains(out, "tpm.hcl:6") || !strings.Contains(out, tc.wantErr) {
					t.Fatalf("%s: err=%v, want %q at tpm.hcl:6\n%s", cmd, err, tc.wantErr, out)
				}
				if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
					t.Fatalf("%s wrote to data_dir before rejecting the configuration (stat: %v)", cmd, err)
				}
			}
		})
	}
}
