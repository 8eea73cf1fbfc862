// Package testenv is the integration harness: it builds the real
// hallmark-server and hallmark-agent binaries once per test binary, starts
// them in temporary directories with real sockets, and drives them through
// their CLIs, so end-to-end tests read like a story:
//
//	env := testenv.New(t)
//	srv := env.StartServer()
//	ag := env.StartAgent(srv, srv.Token())
//	srv.CreateEntry("spiffe://example.org/w", ag.ID(), "unix:uid:0")
package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/internal/syncbuf"
)

// TrustDomain is the default trust domain of test servers (see
// WithTrustDomain).
const TrustDomain = "example.org"

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// RepoRoot returns the repository root.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Race reports whether the daemons are built with the race detector
// (HALLMARK_RACE=1, set by `make race`). A data race reported in a daemon's
// output then fails the test that started it. Memory bounds do not hold
// under the race detector (it multiplies memory use); tests that assert
// them check Race.
var Race = os.Getenv("HALLMARK_RACE") == "1"

// Version is the release the test binaries are linked with
// (-ldflags "-X main.version=..."), as a release build sets it.
const Version = "0.0.0-e2e+linked"

// Pprof reports whether the daemons are built with the pprof tag
// (HALLMARK_PPROF=1, set by `make bench-fleet PPROF=1`): the server then
// serves net/http/pprof on HALLMARK_PPROF_ADDR when that is set (see
// cmd/hallmark-server/pprof_tcp.go). Released binaries never carry it.
var Pprof = os.Getenv("HALLMARK_PPROF") == "1"

// Binaries builds the binaries (once, with the release build tags plus
// those in $HALLMARK_BUILD_TAGS, if any: see
// BUILD_TAGS in the Makefile) and returns their directory.
func Binaries(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "hallmark-bin")
		if buildErr != nil {
			return
		}
		tags := "grpcnotrace"
		if extra := os.Getenv("HALLMARK_BUILD_TAGS"); extra != "" {
			tags += "," + extra // e.g. pprof: see internal/devpprof
		}
		if Pprof {
			tags += ",pprof"
		}
		// Linked like a release (-X main.version), so tests see the
		// version -version prints and hallmark_build_info reports.
		args := []string{"build", "-tags", tags, "-ldflags", "-X main.version=" + Version}
		if Race {
			args = append(args, "-race")
		}
		args = append(args, "-o", binDir, "./cmd/hallmark-server", "./cmd/hallmark-agent")
		cmd := exec.Command("go", args...)
		cmd.Dir = RepoRoot()
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// Cleanup removes the binaries Binaries built (about 66 MB per test
// binary). Call it from TestMain after m.Run.
func Cleanup() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}

// Env is one test's set of processes and directories.
type Env struct {
	t   testing.TB
	Dir string
	bin string
}

// New returns an environment whose processes are stopped at cleanup.
func New(t testing.TB) *Env {
	t.Helper()
	bin := Binaries(t)
	// Short paths: unix socket paths are limited to 107 bytes.
	dir, err := os.MkdirTemp("", "hm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return &Env{t: t, Dir: dir, bin: bin}
}

// FreePort returns a free loopback TCP port.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Process is a started binary.
type Process struct {
	t      testing.TB
	name   string
	cmd    *exec.Cmd
	logBuf *syncbuf.Buffer
	done   chan struct{}
	err    error
}

func (e *Env) start(name string, args ...string) *Process {
	e.t.Helper()
	return e.startEnv(nil, name, args...)
}

// startEnv starts a binary with extra "KEY=value" environment variables.
func (e *Env) startEnv(env []string, name string, args ...string) *Process {
	e.t.Helper()
	cmd := exec.Command(filepath.Join(e.bin, name), args...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	p := &Process{t: e.t, name: name, cmd: cmd, logBuf: &syncbuf.Buffer{}, done: make(chan struct{})}
	cmd.Stdout = p.logBuf
	cmd.Stderr = p.logBuf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		e.t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	e.t.Cleanup(func() {
		p.Stop()
		if Race && strings.Contains(p.Log(), "WARNING: DATA RACE") {
			e.t.Errorf("%s: the race detector reported a data race", name)
		}
		if e.t.Failed() {
			e.t.Logf("--- %s log ---\n%s", name, p.Log())
		}
	})
	return p
}

// Log returns everything the process printed.
func (p *Process) Log() string { return p.logBuf.String() }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM and waits (SIGKILL after 5 s).
func (p *Process) Stop() {
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Kill sends SIGKILL and waits.
func (p *Process) Kill() {
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// PID returns the process ID.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// WaitFor polls cond every 20 ms until it is true or timeout passes.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runCmd runs a binary to completion.
func (e *Env) runCmd(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(e.bin, name), args...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func field(out, label string) string {
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == label {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// StartProcess starts a binary with arbitrary arguments (for failure cases).
func (e *Env) StartProcess(name string, args ...string) *Process {
	e.t.Helper()
	return e.start(name, args...)
}

// CLI runs one of the built binaries to completion and returns its output.
func (e *Env) CLI(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return e.runCmd(ctx, name, args...)
}
