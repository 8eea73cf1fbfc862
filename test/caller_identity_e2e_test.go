package test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/hallmarkid/hallmark/test/testenv"
)

// callerEnvSetup starts a server and an agent whose socket other uids can
// reach, with discover_workload_path on, and returns a world-readable
// directory for helper binaries.
func callerEnvSetup(t *testing.T, agentHCL string) (*testenv.Server, *testenv.Agent, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test runs as root: it starts callers as uid 65534 and installs a setgid program")
	}
	env := testenv.New(t)
	srv := env.StartServer()
	ag := env.StartAgent(srv, srv.Token(), testenv.WithAgentTopHCL("workload_attestor \"unix\" {\n  discover_workload_path = true\n}\n"+agentHCL))
	for _, d := range []string{env.Dir, ag.Dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(env.Dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	return srv, ag, bin
}

// installTestBinary copies the test binary to path, owned by root:gid with
// mode (e.g. 02755 for a setgid program).
func installTestBinary(t *testing.T, path string, gid int, mode os.FileMode) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 0, gid); err != nil {
		t.Fatal(err)
	}
	// chmod after chown: chown clears the setgid bit.
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// passedCaller is a child process that connected to the Workload API and
// handed the connection to this test, which plays the helper that uses
// it while the child changes.
type passedCaller struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	cc     *grpc.ClientConn
}

// startPassedCaller runs bin in connect-pass mode with cred (nil: root).
func startPassedCaller(t *testing.T, bin, sock string, cred *syscall.Credential) *passedCaller {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "ours"), os.NewFile(uintptr(fds[1]), "theirs")
	defer ours.Close()
	cmd := exec.Command(bin, "--", sock)
	cmd.Env = append(os.Environ(), callerEnv+"=connect-pass")
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	t.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() })

	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(int(ours.Fd()), buf, oob, 0)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("control messages %v: %v", msgs, err)
	}
	rights, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(rights) != 1 {
		t.Fatalf("rights %v: %v", rights, err)
	}
	f := os.NewFile(uintptr(rights[0]), "passed")
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	var used atomic.Bool
	cc, err := grpc.NewClient("passthrough:///passed",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) {
			if used.Swap(true) {
				return nil, errors.New("the passed connection is used up")
			}
			return conn, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return &passedCaller{t: t, cmd: cmd, stdin: stdin, stdout: bufio.NewReader(stdout), cc: cc}
}

// do sends a command to the child and waits for its answer line.
func (p *passedCaller) do(cmd, wantLine string) {
	p.t.Helper()
	if _, err := fmt.Fprintln(p.stdin, cmd); err != nil {
		p.t.Fatal(err)
	}
	if wantLine == "" {
		return
	}
	line, err := p.stdout.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != wantLine {
		p.t.Fatalf("child after %q: %q, %v; want %q", cmd, line, err, wantLine)
	}
}

// exec makes the child exec bin (which then waits) and waits until it runs.
func (p *passedCaller) exec(bin string) { p.t.Helper(); p.do("exec "+bin, "ready") }

// exit makes the child exit and waits for it.
func (p *passedCaller) exit() {
	p.t.Helper()
	p.do("exit", "")
	p.cmd.Wait()
}

func workloadCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "true")
}

// fetchX509 makes one FetchX509SVID call over the passed connection and
// returns the SPIFFE IDs or the error.
func (p *passedCaller) fetchX509() ([]string, error) {
	p.t.Helper()
	s, err := workload.NewSpiffeWorkloadAPIClient(p.cc).FetchX509SVID(workloadCtx(p.t), &workload.X509SVIDRequest{})
	if err != nil {
		return nil, err
	}
	resp, err := s.Recv()
	if err != nil {
		return nil, err
	}
	return svidIDs(resp), nil
}

func svidIDs(resp *workload.X509SVIDResponse) []string {
	var ids []string
	for _, s := range resp.GetSvids() {
		ids = append(ids, s.GetSpiffeId())
	}
	return ids
}

// wantRefused fails unless err is PermissionDenied with a message
// containing want.
func wantRefused(t *testing.T, what string, ids []string, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: the helper got %v, want PermissionDenied", what, ids)
	}
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), want) {
		t.Fatalf("%s: %v, want PermissionDenied containing %q", what, err, want)
	}
}

// A process connects, hands the connection to a helper and execs another
// program: the helper must not be served the new program's identity.
func TestCallerExecAfterConnect(t *testing.T) {
	metrics := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	srv, ag, bin := callerEnvSetup(t, `telemetry { listen_address = "`+metrics+`" }`)
	a := installTestBinary(t, filepath.Join(bin, "a.test"), 0, 0o755)
	b := installTestBinary(t, filepath.Join(bin, "b.test"), 0, 0o755)
	const bID = "spiffe://example.org/program-b"
	srv.CreateEntry(bID, ag.ID(), "-selector", "unix:path:"+b)
	waitEntry(t, b, ag, bID)

	for _, cred := range []*syscall.Credential{nil, {Uid: 65534, Gid: 65534}} {
		name := "root"
		if cred != nil {
			name = "uid 65534"
		}
		t.Run(name, func(t *testing.T) {
			p := startPassedCaller(t, a, ag.SocketPath, cred)
			ids, err := p.fetchX509()
			wantRefused(t, "before the exec", ids, err, "no identity issued")
			p.exec(b)
			ids, err = p.fetchX509()
			wantRefused(t, "after the exec", ids, err, "changed since it connected")
			if !strings.Contains(ag.Log(), "changed since it connected") {
				t.Error("the refusal is not in the agent's log")
			}
		})
	}
	// Both refusals are counted by reason.
	if got := metricsOf(t, metrics)[`hallmark_workload_attestation_failures_total{reason="caller_changed"}`]; got != 2 {
		t.Errorf("workload attestation failures (caller_changed) = %v, want 2", got)
	}
}

// waitEntry waits until program bin, run directly, gets id.
func waitEntry(t *testing.T, bin string, ag *testenv.Agent, id string) {
	t.Helper()
	testenv.WaitFor(t, 20*time.Second, bin+" gets "+id, func() bool {
		return strings.Contains(runFetch(t, bin, ag, nil), id)
	})
}

// runFetch runs bin in fetch mode with cred and returns its output.
func runFetch(t *testing.T, bin string, ag *testenv.Agent, cred *syscall.Credential) string {
	t.Helper()
	cmd := exec.Command(bin, "--", ag.Addr())
	cmd.Env = append(os.Environ(), callerEnv+"=fetch")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("fetch child: %v\n%s", err, out)
	}
	return string(out)
}

// uid 65534 and a setgid-4242 program: the program itself is entitled to
// unix:gid:4242 (its effective gid is 4242 at connect and at every call),
// a process that gains or loses gid 4242 after it connected is not.
func TestCallerSetgidAfterConnect(t *testing.T) {
	srv, ag, bin := callerEnvSetup(t, "")
	a := installTestBinary(t, filepath.Join(bin, "a.test"), 0, 0o755)
	g := installTestBinary(t, filepath.Join(bin, "g.test"), 4242, 0o755|os.ModeSetgid)
	const gidID, nobodyID = "spiffe://example.org/gid-4242", "spiffe://example.org/nobody"
	srv.CreateEntry(gidID, ag.ID(), "-selector", "unix:gid:4242")
	srv.CreateEntry(nobodyID, ag.ID(), "-selector", "unix:uid:65534")
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}

	// The setgid program, run by uid 65534, gets both.
	testenv.WaitFor(t, 20*time.Second, "setgid program gets "+gidID, func() bool {
		return strings.Contains(runFetch(t, g, ag, nobody), gidID)
	})

	t.Run("gain gid 4242 by exec", func(t *testing.T) {
		p := startPassedCaller(t, a, ag.SocketPath, nobody)
		ids, err := p.fetchX509()
		if err != nil || strings.Join(ids, ",") != nobodyID {
			t.Fatalf("before the exec: %v, %v; want %s", ids, err, nobodyID)
		}
		p.exec(g)
		ids, err = p.fetchX509()
		wantRefused(t, "after exec of the setgid program", ids, err, "changed since it connected")
	})
	t.Run("lose gid 4242 by setgid", func(t *testing.T) {
		p := startPassedCaller(t, g, ag.SocketPath, nobody)
		ids, err := p.fetchX509()
		if err != nil || !strings.Contains(strings.Join(ids, ","), gidID) {
			t.Fatalf("before setgid: %v, %v; want %s", ids, err, gidID)
		}
		p.do("setgid 65534", "done")
		ids, err = p.fetchX509()
		wantRefused(t, "after setgid(65534)", ids, err, "changed since it connected")
	})
}

// Streams opened by a helper on a passed connection end at the next push
// once the process that connected has exec'd or exited.
func TestCallerStreamsCutOff(t *testing.T) {
	srv, ag, bin := callerEnvSetup(t, "")
	a := installTestBinary(t, filepath.Join(bin, "a.test"), 0, 0o755)
	b := installTestBinary(t, filepath.Join(bin, "b.test"), 0, 0o755)
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	srv.CreateEntry("spiffe://example.org/nobody", ag.ID(), "-selector", "unix:uid:65534")
	testenv.WaitFor(t, 20*time.Second, "uid 65534 gets its SVID", func() bool {
		return strings.Contains(runFetch(t, a, ag, nobody), "spiffe://example.org/nobody")
	})

	for i, change := range []string{"exec", "exit"} {
		t.Run(change, func(t *testing.T) {
			p := startPassedCaller(t, a, ag.SocketPath, nobody)
			ctx := workloadCtx(t)
			wl := workload.NewSpiffeWorkloadAPIClient(p.cc)
			x509s, err := wl.FetchX509SVID(ctx, &workload.X509SVIDRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := x509s.Recv(); err != nil {
				t.Fatal(err)
			}
			bundles, err := wl.FetchX509Bundles(ctx, &workload.X509BundlesRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := bundles.Recv(); err != nil {
				t.Fatal(err)
			}
			jwtb, err := wl.FetchJWTBundles(ctx, &workload.JWTBundlesRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := jwtb.Recv(); err != nil {
				t.Fatal(err)
			}
			sotw, err := secretv3.NewSecretDiscoveryServiceClient(p.cc).StreamSecrets(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := sotw.Send(&discoveryv3.DiscoveryRequest{TypeUrl: secretType}); err != nil {
				t.Fatal(err)
			}
			if _, err := sotw.Recv(); err != nil {
				t.Fatal(err)
			}
			delta, err := secretv3.NewSecretDiscoveryServiceClient(p.cc).DeltaSecrets(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := delta.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: secretType}); err != nil {
				t.Fatal(err)
			}
			if _, err := delta.Recv(); err != nil {
				t.Fatal(err)
			}

			if change == "exec" {
				p.exec(b)
			} else {
				p.exit()
			}
			// A new entry for uid 65534: a push to every stream.
			srv.CreateEntry(fmt.Sprintf("spiffe://example.org/nobody-%d", i), ag.ID(), "-selector", "unix:uid:65534")

			want := "changed since it connected"
			if change == "exit" {
				want = "process exited"
			}
			check := func(name string, recv func() error) {
				t.Helper()
				err := recv()
				if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), want) {
					t.Errorf("%s stream after %s: %v, want PermissionDenied containing %q", name, change, err, want)
				}
			}
			check("FetchX509SVID", func() error { r, err := x509s.Recv(); return errOr(r, err) })
			check("FetchX509Bundles", func() error { r, err := bundles.Recv(); return errOr(r, err) })
			check("FetchJWTBundles", func() error { r, err := jwtb.Recv(); return errOr(r, err) })
			check("StreamSecrets", func() error { r, err := sotw.Recv(); return errOr(r, err) })
			check("DeltaSecrets", func() error { r, err := delta.Recv(); return errOr(r, err) })
		})
	}
}

// errOr turns a received message into an error, so that a stream that
// still delivers fails the check.
func errOr(msg any, err error) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("received %T after the caller changed", msg)
}
