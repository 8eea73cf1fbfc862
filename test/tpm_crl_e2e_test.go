package test

import (
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	attesttpm "github.com/hallmarkid/hallmark/attestors/tpm"
	"github.com/hallmarkid/hallmark/test/testenv"
	"github.com/hallmarkid/hallmark/tpm"
	"github.com/hallmarkid/hallmark/tpm/tpmtest"
)

// A TPM whose EK certificate the manufacturer has revoked cannot attest:
// the operator puts the manufacturer's CRL in ek_crl_dir and the server
// refuses the EK, naming the serial and the CRL, even though the
// certificate chains to the configured root.
func TestTPMRevokedEKE2E(t *testing.T) {
	tpmtest.Require(t)
	ca := tpmtest.SharedCA(t, "e2e")
	inst := tpmtest.Shared(t, "e2e", ca).Start(t)
	d, err := tpm.Open(inst.Device())
	must(t, err)
	ek, err := d.EK()
	d.Close()
	must(t, err)
	cert, err := attesttpm.ParseEKCert(ek.Cert)
	must(t, err)

	env := testenv.New(t)
	crlDir := filepath.Join(env.Dir, "ek-crl")
	must(t, os.MkdirAll(crlDir, 0o755))
	now := time.Now()
	must(t, os.WriteFile(filepath.Join(crlDir, "manufacturer.crl"),
		ca.CRL(t, 1, now.Add(-time.Hour), now.Add(24*time.Hour), big.NewInt(1000), cert.SerialNumber), 0o644))

	srv := env.StartServer(testenv.WithHCL(`
node_attestor "tpm" {
  ek_ca_dir  = "` + ca.WriteDir(t) + `"
  ek_crl_dir = "` + crlDir + `"
}`))
	ag := env.StartAgent(srv, "", testenv.WithAgentTopHCL(`
node_attestor "tpm" {
  device    = "`+inst.Device()+`"
  event_log = "none"
}`), testenv.NoWait())
	waitRefused(t, srv, ag, "EK certificate (serial "+cert.SerialNumber.String()+") is revoked by")
}
