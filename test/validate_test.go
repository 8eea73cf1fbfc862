package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hallmarkid/hallmark/test/testenv"
)

// `hallmark-server validate` accepts the shipped example configuration,
// refuses a bad node_attestor block with file:line, and neither it nor
// `run` writes to data_dir before the configuration is known to be good.
func TestServerValidate(t *testing.T) {
	env := testenv.New(t)
	example := filepath.Join(testenv.RepoRoot(), "conf", "server.hcl")
	if out, err := env.CLI("hallmark-server", "validate", "-config", example); err != nil || !strings.Contains(out, "is valid") {
		t.Fatalf("validate %s: %v\n%s", example, err, out)
	}

	dataDir := filepath.Join(env.Dir, "data")
	bad := filepath.Join(env.Dir, "bad.hcl")
	must(t, os.WriteFile(bad, []byte(`server {
  trust_domain = "example.org"
  data_dir     = "`+dataDir+`"
  socket_path  = "`+filepath.Join(env.Dir, "admin.sock")+`"
}
node_attestor "tpm" {
  ek_ca_dir = "/nonexistent/ek-ca"
}
`), 0o600))
	for _, cmd := range []string{"validate", "run"} {
		out, err := env.CLI("hallmark-server", cmd, "-config", bad)
		if err == nil || !strings.Contains(out, "bad.hcl:6") {
			t.Fatalf("%s with a bad node_attestor block: err=%v\n%s", cmd, err, out)
		}
		if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
			t.Fatalf("%s wrote to data_dir before rejecting the configuration (stat: %v)", cmd, err)
		}
	}
}
