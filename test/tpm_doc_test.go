package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hallmarkid/hallmark/test/testenv"
	"github.com/hallmarkid/hallmark/tpm/tpmtest"
)

// TestTPMDocSwtpm runs docs/tpm.md's "Running an agent against swtpm"
// commands verbatim (runDocBlock): a private EK CA, swtpm manufactured and
// started with not-need-init,startup-clear, ek_ca_dir built from the CA
// certificate, a server and a TPM-attested agent. The agent list and
// `tpm info` name the same tpm:manufacturer: selector.
func TestTPMDocSwtpm(t *testing.T) {
	tpmtest.Require(t)
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatalf("docs/tpm.md uses openssl: %v", err)
	}
	doc, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "docs", "tpm.md"))
	if err != nil {
		t.Fatal(err)
	}
	block, err := readmeBlock(string(doc), "## Running an agent against swtpm (no TPM needed)")
	if err != nil {
		t.Fatal(err)
	}
	_, _, out := runDocBlock(t, block, nil, func(repo string) {
		// swtpm --daemon left the process group; stop it if the commands
		// did not get that far.
		ctrl := filepath.Join(repo, "tpm-lab", "tpm.sock.ctrl")
		if _, err := os.Stat(ctrl); err == nil {
			_ = exec.Command("swtpm_ioctl", "--unix", ctrl, "-s").Run()
		}
	})

	ekHash := regexp.MustCompile(`(?m)^EK hash:\s+([0-9a-f]{64})$`).FindStringSubmatch(out)
	if ekHash == nil {
		t.Fatalf("tpm info printed no EK hash:\n%s", out)
	}
	for _, want := range []string{
		"SPIFFE ID         : spiffe://example.org/agent/tpm/" + ekHash[1],
		"Selector          : tpm:ek-issuer-cn:Lab TPM EK CA",
		// The same identifier from tpm info and from the server.
		"Selector:          tpm:manufacturer:00001014 ",
		"Selector          : tpm:manufacturer:00001014",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
