package test

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/test/testenv"
	"github.com/hallmarkid/hallmark/tpm/tpmtest"
)

// runDemo runs scripts/demo.sh (what `make demo` runs after `make build`)
// on the test's binaries with env added, and returns its output.
func runDemo(t *testing.T, env ...string) (string, time.Duration, error) {
	t.Helper()
	cmd := exec.Command("scripts/demo.sh")
	cmd.Dir = testenv.RepoRoot()
	cmd.Env = append(os.Environ(), append([]string{"HALLMARK_BIN=" + testenv.Binaries(t)}, env...)...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	return string(out), time.Since(start), err
}

// demoLines checks that out has a line per pattern, in that order.
func demoLines(t *testing.T, out string, patterns ...string) {
	t.Helper()
	rest := out
	for _, p := range patterns {
		loc := regexp.MustCompile(`(?m)^ *[0-9.]+s  ` + p).FindStringIndex(rest)
		if loc == nil {
			t.Fatalf("demo output lacks a line matching %q (after the previous one):\n%s", p, out)
		}
		rest = rest[loc[1]:]
	}
}

// The headline, as `make demo` shows it: a swtpm node attests with its
// EK certificate and a quote, a workload gets its SVID over the Workload
// API and over SDS, the SVID rotates by push, and a PCR change gets the
// node refused and evicted.
func TestDemoShowsTheHeadline(t *testing.T) {
	tpmtest.Require(t)
	out, took, err := runDemo(t)
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	demoLines(t, out,
		`tpm +swtpm manufactured: its EK certificate is signed by "Hallmark Demo TPM Manufacturer CA"`,
		`server +hallmark-server .* requires PCR 16`,
		`attest +node attested as …/agent/tpm/[0-9a-f]{16}…: EK certificate chains to the vendor CA`,
		`wlapi +the Workload API gave this process spiffe://example.org/demo/web `,
		`sds +Envoy's SDS stream .* got the same (certificate|identity).*ROOTCA as envoy.tls.cert_validator.spiffe`,
		`rotate +the agent renewed the SVID at half-life and pushed serial [0-9]+… down the open stream`,
		`pcr +PCR 16 extended .* by tpm2_pcrextend`,
		`refuse +.*tpm: PCR policy: PCR 16 \(sha256\) = [0-9a-f]{64} not among the allowed values`,
		`evict +the server evicted the node`,
		`done `,
	)
	if took > time.Minute {
		t.Errorf("the demo took %s, want under a minute", took)
	}
	t.Logf("demo took %s", took)
}

// Without a swtpm the demo still shows identity over the Workload API and
// SDS and a pushed rotation, on a join-token node, and says why.
func TestDemoJoinTokenFallback(t *testing.T) {
	out, _, err := runDemo(t, "DEMO_ATTESTOR=join_token")
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	demoLines(t, out,
		`note +DEMO_ATTESTOR=join_token: a join token attests the node instead`,
		`attest +node attested with the join token as spiffe://example.org/agent/join_token/`,
		`wlapi +the Workload API gave this process spiffe://example.org/demo/web `,
		`sds +Envoy's SDS stream`,
		`rotate +the agent renewed the SVID`,
		`skip +PCR change refusing the node: needs swtpm`,
	)
}

// A failing demo used to remove its logs with the reason in them (here
// "address already in use", the port being taken): it must print the
// failed daemon's log tail first, and still clean up.
func TestDemoFailurePrintsTheDaemonLog(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	out, _, err := runDemo(t, "DEMO_ATTESTOR=join_token", "DEMO_PORT="+port)
	if err == nil {
		t.Fatalf("demo succeeded on a taken port:\n%s", out)
	}
	for _, want := range []string{"hallmark-server exited", "address already in use"} {
		if !strings.Contains(out, want) {
			t.Fatalf("failed demo output lacks %q:\n%s", want, out)
		}
	}
	m := regexp.MustCompile(`demo: removed (/tmp/hallmark-demo\.\S+) `).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("failed demo output does not say it removed its directory:\n%s", out)
	}
	if _, err := os.Stat(filepath.Clean(m[1])); !os.IsNotExist(err) {
		t.Fatalf("demo left %s behind: %v", m[1], err)
	}
}
