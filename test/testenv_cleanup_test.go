package test

import (
	"os"
	"os/exec"
	"regexp"
	"testing"

	"github.com/hallmarkid/hallmark/test/testenv"
)

// TestBinariesRemovedAtExit: a test binary that built the daemons
// (testenv.Binaries, about 66 MB in /tmp/hallmark-bin*) removes them when
// it exits (TestMain calls testenv.Cleanup). The child is this test binary
// running only this test.
func TestBinariesRemovedAtExit(t *testing.T) {
	if os.Getenv("HALLMARK_TEST_BINDIR_CHILD") == "1" {
		os.Stdout.WriteString("BINDIR=" + testenv.Binaries(t) + "\n")
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestBinariesRemovedAtExit$", "-test.count=1")
	cmd.Env = append(os.Environ(), "HALLMARK_TEST_BINDIR_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`(?m)^BINDIR=(\S+)$`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("child printed no BINDIR:\n%s", out)
	}
	if _, err := os.Stat(string(m[1])); !os.IsNotExist(err) {
		os.RemoveAll(string(m[1]))
		t.Fatalf("%s left behind after the test binary exited (stat: %v)", m[1], err)
	}
}
