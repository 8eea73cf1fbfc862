package test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/test/testenv"
)

// readmeBlock returns the commands of the first ```sh block after heading
// in README.md.
func readmeBlock(readme, heading string) (string, error) {
	_, rest, ok := strings.Cut("\n"+readme, "\n"+heading+"\n")
	if !ok {
		return "", fmt.Errorf("readme: no heading %q", heading)
	}
	if next := strings.Index(rest, "\n## "); next >= 0 {
		rest = rest[:next]
	}
	_, block, ok := strings.Cut(rest, "```sh\n")
	if !ok {
		return "", fmt.Errorf("readme: no ```sh block under %q", heading)
	}
	block, _, ok = strings.Cut(block, "```")
	if !ok {
		return "", fmt.Errorf("readme: unterminated ```sh block under %q", heading)
	}
	return block, nil
}

func TestReadmeBlock(t *testing.T) {
	tests := []struct {
		name    string
		readme  string
		want    string
		wantErr string
	}{
		{name: "found", readme: "x\n## A\n\ntext\n```sh\nls\necho\n```\n## B\n```sh\nno\n```\n", want: "ls\necho\n"},
		{name: "no heading", readme: "## B\n```sh\nls\n```\n", wantErr: "no heading"},
		{name: "block under the next heading only", readme: "## A\ntext\n## B\n```sh\nls\n```\n", wantErr: "no ```sh block"},
		{name: "unterminated", readme: "## A\n```sh\nls\n", wantErr: "unterminated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readmeBlock(tt.readme, "## A")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// TestReadmeRunByHand runs the README's "Run it by hand" commands verbatim
// (runDocBlock) in a copy of conf/: the SVID lands in /tmp/svid.
func TestReadmeRunByHand(t *testing.T) {
	root := testenv.RepoRoot()
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	block, err := readmeBlock(string(readme), "## Run it by hand")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(block, "make build\n") {
		t.Fatalf("readme: the walkthrough should start with make build:\n%s", block)
	}

	repo, tmp, out := runDocBlock(t, block, map[string]string{
		"conf/server.hcl": filepath.Join(root, "conf", "server.hcl"),
		"conf/agent.hcl":  filepath.Join(root, "conf", "agent.hcl"),
	}, nil)

	// The SVID written to /tmp/svid carries the entry's SPIFFE ID.
	data, err := os.ReadFile(filepath.Join(tmp, "svid", "svid.0.pem"))
	if err != nil {
		t.Fatalf("readme walkthrough wrote no SVID: %v\n%s", err, out)
	}
	blk, _ := pem.Decode(data)
	if blk == nil {
		t.Fatalf("svid.0.pem holds no PEM block")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if len(cert.URIs) != 1 || cert.URIs[0].String() != "spiffe://example.org/myservice" {
		t.Fatalf("SVID names %v, want spiffe://example.org/myservice", cert.URIs)
	}
	// The state the walkthrough leaves is what .gitignore covers.
	for _, p := range []string{"data/server", "data/agent", "conf/bundle.pem"} {
		if _, err := os.Stat(filepath.Join(repo, p)); err != nil {
			t.Errorf("after the walkthrough: %v", err)
		}
	}
	gitignore, err := os.ReadFile(filepath.Join(root, ".gitignore"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"/data/", "/conf/bundle.pem"} {
		if !strings.Contains("\n"+string(gitignore), "\n"+want+"\n") {
			t.Errorf(".gitignore lacks %s (the walkthrough writes it)", want)
		}
	}
}

// runDocBlock runs a documentation block of shell commands verbatim, as a
// reader pastes them into a shell at the repository root, against the real
// binaries: in a fresh directory holding bin/ (the binaries testenv built)
// and copies of files (destination → source), in private mount and network
// namespaces so that fixed ports, the default sockets under /run and /tmp
// belong to this run alone. `make build` is the one command not run (the
// binaries are already in bin/). It returns the directory, the private
// /tmp and the combined output; a failing command fails the test.
//
// atExit, when not nil, runs at the test's cleanup with the directory (to
// stop daemons the commands started outside the process group).
func runDocBlock(t *testing.T, block string, files map[string]string, atExit func(repo string)) (repo, tmp, out string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("docs: running documented commands needs root for private mount and network namespaces (unshare)")
	}
	for _, tool := range []string{"unshare", "ip", "bash", "sed"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("docs: %s: %v", tool, err)
		}
	}
	// Not under /tmp, which the commands get a private copy of: absolute
	// paths into the directory must stay valid inside the namespace.
	work, err := os.MkdirTemp("/var/tmp", "hallmark-doc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	repo = filepath.Join(work, "repo")
	tmp = filepath.Join(work, "tmp")
	if atExit != nil {
		t.Cleanup(func() { atExit(repo) })
	}
	for _, d := range []string{filepath.Join(repo, "bin"), tmp} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for to, from := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(repo, to)), 0o700); err != nil {
			t.Fatal(err)
		}
		copyFile(t, from, filepath.Join(repo, to), 0o644)
	}
	bin := testenv.Binaries(t)
	for _, b := range []string{"hallmark-server", "hallmark-agent"} {
		copyFile(t, filepath.Join(bin, b), filepath.Join(repo, "bin", b), 0o755)
	}

	// The prelude gives the namespaces a loopback interface, an empty /run
	// and a private /tmp (work/tmp).
	prelude := `set -e
ip link set lo up
mount -t tmpfs -o mode=0755 tmpfs /run
cd "$HALLMARK_DOC_REPO"
mount --bind "$HALLMARK_DOC_TMP" /tmp
make() { [ "$*" = build ] || { echo "make $*: only make build is expected" >&2; return 1; }; }
`
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "--mount", "--net", "bash", "-c", prelude+block)
	cmd.Env = append(os.Environ(), "HALLMARK_DOC_REPO="+repo, "HALLMARK_DOC_TMP="+tmp)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Whatever happens, end the daemons the script started in the background.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	runErr := cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if runErr != nil {
		t.Fatalf("documented commands: %v (context: %v)\n%s", runErr, ctx.Err(), buf.String())
	}
	return repo, tmp, buf.String()
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, mode); err != nil && !errors.Is(err, os.ErrExist) {
		t.Fatal(err)
	}
}
