package test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/test/testenv"
)

// nobody is the uid of the local attacker in these tests.
const nobody = 65534

// mkdirOwned creates dir with mode (exactly, whatever the umask) owned
// by uid.
func mkdirAllOwned(t *testing.T, dir string, uid int, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, uid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
}

// serverHCL writes a server configuration in dir and returns its path.
func serverHCL(t *testing.T, dir, dataDir, sock string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "server.hcl")
	hcl := fmt.Sprintf("server {\n  trust_domain = %q\n  bind_address = \"127.0.0.1\"\n  bind_port = %d\n  data_dir = %q\n  socket_path = %q\n}\n",
		testenv.TrustDomain, testenv.FreePort(t), dataDir, sock)
	if err := os.WriteFile(path, []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// agentHCL writes an agent configuration for srv in dir and returns its path.
func agentHCL(t *testing.T, dir string, srv *testenv.Server, dataDir, sock, extra string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "agent.hcl")
	hcl := fmt.Sprintf("agent {\n  trust_domain = %q\n  server_address = %q\n  trust_bundle_path = %q\n  data_dir = %q\n  socket_path = %q\n}\n%s\n",
		srv.TrustDomain, srv.Address, srv.BundlePath(), dataDir, sock, extra)
	if err := os.WriteFile(path, []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// refusal waits until p exits and returns its log; it fails the test when
// serving(), polled meanwhile, reports that p came up instead.
func refusal(t *testing.T, p *testenv.Process, serving func() bool, what string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !p.Exited() {
		if serving() {
			t.Fatalf("%s: it started and serves\n%s", what, p.Log())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still running after 20 s\n%s", what, p.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p.Log()
}

func serverServes(env *testenv.Env, sock string) func() bool {
	return func() bool {
		_, err := env.CLI("hallmark-server", "healthcheck", "-shallow", "-socketPath", sock)
		return err == nil
	}
}

func agentServes(env *testenv.Env, sock string) func() bool {
	return func() bool {
		_, err := env.CLI("hallmark-agent", "healthcheck", "-socketPath", sock)
		return err == nil
	}
}

func wantAll(t *testing.T, log string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(log, w) {
			t.Errorf("the log does not mention %q:\n%s", w, log)
		}
	}
}

// A local user who creates the admin socket's directory (or one above it)
// before the server starts could later swap the live socket for their own.
// The server refuses to listen there, naming the directory, owner and mode.
func TestServerRefusesUntrustedSocketDir(t *testing.T) {
	env := testenv.New(t)
	tests := []struct {
		name  string
		setup func(t *testing.T, base string) (sock string)
		want  []string // in the log; the first %s is base
	}{
		{name: "dir pre-created by another user, 0777", setup: func(t *testing.T, base string) string {
			mkdirAllOwned(t, filepath.Join(base, "private"), nobody, 0o777)
			return filepath.Join(base, "private", "api.sock")
		}, want: []string{"%s/private", "uid 65534", "0777"}},
		{name: "dir pre-created by another user, 0700", setup: func(t *testing.T, base string) string {
			mkdirAllOwned(t, filepath.Join(base, "private"), nobody, 0o700)
			return filepath.Join(base, "private", "api.sock")
		}, want: []string{"%s/private", "uid 65534", "0700"}},
		{name: "own dir writable by others", setup: func(t *testing.T, base string) string {
			mkdirAllOwned(t, filepath.Join(base, "private"), 0, 0o777)
			return filepath.Join(base, "private", "api.sock")
		}, want: []string{"%s/private", "uid 0", "0777"}},
		{name: "own dir writable by group", setup: func(t *testing.T, base string) string {
			mkdirAllOwned(t, filepath.Join(base, "private"), 0, 0o770)
			return filepath.Join(base, "private", "api.sock")
		}, want: []string{"%s/private", "0770"}},
		{name: "admin dir readable by others", setup: func(t *testing.T, base string) string {
			mkdirAllOwned(t, filepath.Join(base, "private"), 0, 0o755)
			return filepath.Join(base, "private", "api.sock")
		}, want: []string{"%s/private", "0755", "0700"}},
		{name: "parent writable by others, not sticky", setup: func(t *testing.T, base string) string {
			mkdirAllOwned(t, filepath.Join(base, "shared"), 0, 0o777)
			return filepath.Join(base, "shared", "private", "api.sock")
		}, want: []string{"%s/shared", "0777"}},
		{name: "parent owned by another user", setup: func(t *testing.T, base string) string {
			mkdirAllOwned(t, filepath.Join(base, "theirs"), nobody, 0o755)
			return filepath.Join(base, "theirs", "private", "api.sock")
		}, want: []string{"%s/theirs", "uid 65534"}},
		{name: "socket dir is a symlink", setup: func(t *testing.T, base string) string {
			mkdirAllOwned(t, filepath.Join(base, "real"), 0, 0o700)
			if err := os.Symlink(filepath.Join(base, "real"), filepath.Join(base, "link")); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(base, "link", "api.sock")
		}, want: []string{"%s/link", "symlink"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := filepath.Join(env.Dir, fmt.Sprintf("s%d", i))
			mkdirAllOwned(t, base, 0, 0o755)
			sock := tt.setup(t, base)
			cfg := serverHCL(t, filepath.Join(env.Dir, fmt.Sprintf("c%d", i)), filepath.Join(env.Dir, fmt.Sprintf("d%d", i)), sock)
			p := env.StartProcess("hallmark-server", "run", "-config", cfg)
			log := refusal(t, p, serverServes(env, sock), "server on "+sock)
			want := []string{"uds: "}
			for _, w := range tt.want {
				want = append(want, strings.ReplaceAll(w, "%s", base))
			}
			wantAll(t, log, want...)
			if _, err := os.Lstat(sock); !os.IsNotExist(err) {
				t.Errorf("something was created at %s: %v", sock, err)
			}
		})
	}
	// A sticky, world-writable parent (like /tmp) is fine: nobody else can
	// rename what the server creates in it.
	t.Run("sticky parent", func(t *testing.T) {
		base := filepath.Join(env.Dir, "sticky")
		mkdirAllOwned(t, base, 0, 0o777|os.ModeSticky)
		sock := filepath.Join(base, "private", "api.sock")
		cfg := serverHCL(t, filepath.Join(env.Dir, "csticky"), filepath.Join(env.Dir, "dsticky"), sock)
		p := env.StartProcess("hallmark-server", "run", "-config", cfg)
		testenv.WaitFor(t, 20*time.Second, "server healthy", func() bool {
			if p.Exited() {
				t.Fatalf("server exited:\n%s", p.Log())
			}
			return serverServes(env, sock)()
		})
		fi, err := os.Stat(filepath.Dir(sock))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("created admin dir mode %o, want 700", fi.Mode().Perm())
		}
	})
}

// The same for the agent's Workload API socket (public: 0755) and its
// SDS-only socket.
func TestAgentRefusesUntrustedSocketDir(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer()
	tests := []struct {
		name  string
		setup func(t *testing.T, base string) (sock, extra string)
		want  []string
	}{
		{name: "dir pre-created by another user", setup: func(t *testing.T, base string) (string, string) {
			mkdirAllOwned(t, filepath.Join(base, "public"), nobody, 0o755)
			return filepath.Join(base, "public", "api.sock"), ""
		}, want: []string{"%s/public", "uid 65534", "0755"}},
		{name: "dir writable by others", setup: func(t *testing.T, base string) (string, string) {
			mkdirAllOwned(t, filepath.Join(base, "public"), 0, 0o777)
			return filepath.Join(base, "public", "api.sock"), ""
		}, want: []string{"%s/public", "0777"}},
		{name: "parent writable by others", setup: func(t *testing.T, base string) (string, string) {
			mkdirAllOwned(t, filepath.Join(base, "shared"), 0, 0o777)
			return filepath.Join(base, "shared", "public", "api.sock"), ""
		}, want: []string{"%s/shared", "0777"}},
		{name: "sds socket dir pre-created by another user", setup: func(t *testing.T, base string) (string, string) {
			mkdirAllOwned(t, filepath.Join(base, "istio"), nobody, 0o755)
			return filepath.Join(base, "public", "api.sock"), fmt.Sprintf("sds {\n  socket_path = %q\n}\n", filepath.Join(base, "istio", "socket"))
		}, want: []string{"%s/istio", "uid 65534"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := filepath.Join(env.Dir, fmt.Sprintf("a%d", i))
			mkdirAllOwned(t, base, 0, 0o755)
			sock, extra := tt.setup(t, base)
			cfg := agentHCL(t, filepath.Join(env.Dir, fmt.Sprintf("c%d", i)), srv, filepath.Join(env.Dir, fmt.Sprintf("d%d", i)), sock, extra)
			p := env.StartProcess("hallmark-agent", "run", "-config", cfg, "-joinToken", srv.Token())
			log := refusal(t, p, agentServes(env, sock), "agent on "+sock)
			want := []string{"uds: "}
			for _, w := range tt.want {
				want = append(want, strings.ReplaceAll(w, "%s", base))
			}
			wantAll(t, log, want...)
		})
	}
	// A public dir prepared by root with 0755 (a hostPath, RuntimeDirectory)
	// is fine.
	t.Run("prepared public dir", func(t *testing.T) {
		base := filepath.Join(env.Dir, "ok")
		mkdirAllOwned(t, filepath.Join(base, "public"), 0, 0o755)
		sock := filepath.Join(base, "public", "api.sock")
		cfg := agentHCL(t, filepath.Join(env.Dir, "cok"), srv, filepath.Join(env.Dir, "dok"), sock, "")
		p := env.StartProcess("hallmark-agent", "run", "-config", cfg, "-joinToken", srv.Token())
		testenv.WaitFor(t, 20*time.Second, "agent healthy", func() bool {
			if p.Exited() {
				t.Fatalf("agent exited:\n%s", p.Log())
			}
			return agentServes(env, sock)()
		})
	})
}

// fakeAdmin is the attacker's admin API: it hands out its own CA.
type fakeAdmin struct {
	apiv1.UnimplementedAdminServer
	der []byte
}

func (f fakeAdmin) GetBundle(context.Context, *apiv1.GetBundleRequest) (*apiv1.Bundle, error) {
	return &apiv1.Bundle{TrustDomain: testenv.TrustDomain, X509Authorities: [][]byte{f.der}}, nil
}

func attackerCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "attacker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// The operator's CLI (root here) refuses an admin socket that another
// user could have planted: one owned by another non-root uid, or in a
// directory another user owns or can write to.
func TestCLIRefusesUntrustedAdminSocket(t *testing.T) {
	env := testenv.New(t)
	der := attackerCA(t)
	tests := []struct {
		name  string
		setup func(t *testing.T, base string) (dir string, sockUID int)
		want  []string
	}{
		{name: "socket owned by another user", setup: func(t *testing.T, base string) (string, int) {
			mkdirAllOwned(t, filepath.Join(base, "d"), 0, 0o755)
			return filepath.Join(base, "d"), nobody
		}, want: []string{"%s/d/api.sock", "uid 65534"}},
		{name: "socket dir owned by another user", setup: func(t *testing.T, base string) (string, int) {
			mkdirAllOwned(t, filepath.Join(base, "d"), nobody, 0o755)
			return filepath.Join(base, "d"), 0
		}, want: []string{"%s/d", "uid 65534"}},
		{name: "socket dir writable by others", setup: func(t *testing.T, base string) (string, int) {
			mkdirAllOwned(t, filepath.Join(base, "d"), 0, 0o777)
			return filepath.Join(base, "d"), 0
		}, want: []string{"%s/d", "0777"}},
		{name: "parent writable by others", setup: func(t *testing.T, base string) (string, int) {
			mkdirAllOwned(t, filepath.Join(base, "w"), 0, 0o777)
			mkdirAllOwned(t, filepath.Join(base, "w", "d"), 0, 0o700)
			return filepath.Join(base, "w", "d"), 0
		}, want: []string{"%s/w", "0777"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := filepath.Join(env.Dir, fmt.Sprintf("x%d", i))
			mkdirAllOwned(t, base, 0, 0o755)
			dir, uid := tt.setup(t, base)
			sock := filepath.Join(dir, "api.sock")
			l, err := net.Listen("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(sock, uid, uid); err != nil {
				t.Fatal(err)
			}
			g := grpc.NewServer()
			apiv1.RegisterAdminServer(g, fakeAdmin{der: der})
			go g.Serve(l)
			defer g.Stop()
			out, err := env.CLI("hallmark-server", "bundle", "show", "-socketPath", sock)
			if err == nil {
				t.Fatalf("the CLI talked to the planted socket and printed its bundle:\n%s", out)
			}
			want := []string{"refusing"}
			for _, w := range tt.want {
				want = append(want, strings.ReplaceAll(w, "%s", base))
			}
			wantAll(t, out, want...)
		})
	}
}

// A second server started on a live admin socket (another data_dir and
// port) must not unlink it: it refuses, and the first keeps serving. A
// dead socket left by a killed server is stale and replaced.
func TestSecondServerDoesNotTakeLiveAdminSocket(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer()
	bundle := srv.MustCLI("bundle", "show")
	cfg := serverHCL(t, filepath.Join(env.Dir, "second"), filepath.Join(env.Dir, "second", "data"), srv.SocketPath)
	p := env.StartProcess("hallmark-server", "run", "-config", cfg)
	deadline := time.Now().Add(20 * time.Second)
	for !p.Exited() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !p.Exited() {
		p.Stop()
		_, err := os.Lstat(srv.SocketPath)
		t.Fatalf("the second server took over the live admin socket (after it stopped: %v)\n%s", err, p.Log())
	}
	wantAll(t, p.Log(), "another hallmark-server is serving "+srv.SocketPath)
	if got := srv.MustCLI("bundle", "show"); got != bundle {
		t.Errorf("the admin socket now answers with another bundle")
	}

	// SIGKILL leaves the socket file behind: the restarted server replaces it.
	srv.Kill()
	if _, err := os.Lstat(srv.SocketPath); err != nil {
		t.Fatalf("the killed server's socket is gone: %v", err)
	}
	srv.Start()
	if got := srv.MustCLI("bundle", "show"); got != bundle {
		t.Errorf("the restarted server answers with another bundle")
	}
}

// Two servers on one data_dir (the second with its own port and socket)
// would share the SQLite database behind each other's caches: the second
// refuses, naming the directory and the holder's PID. Once the first has
// stopped, the second starts.
func TestSecondServerOnSameDataDirRefuses(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer()
	dataDir := filepath.Join(srv.Dir, "data")
	sock := filepath.Join(env.Dir, "second", "admin", "api.sock")
	cfg := serverHCL(t, filepath.Join(env.Dir, "second"), dataDir, sock)
	p := env.StartProcess("hallmark-server", "run", "-config", cfg)
	log := refusal(t, p, serverServes(env, sock), "second server on "+dataDir)
	wantAll(t, log, dataDir, "pid "+strconv.Itoa(srv.PID()))
	srv.MustCLI("healthcheck")

	srv.Stop()
	p = env.StartProcess("hallmark-server", "run", "-config", cfg)
	testenv.WaitFor(t, 20*time.Second, "second server healthy once the first stopped", func() bool {
		if p.Exited() {
			t.Fatalf("second server exited:\n%s", p.Log())
		}
		return serverServes(env, sock)()
	})
}

// The same for agents: a second agent on a data_dir in use refuses.
func TestSecondAgentOnSameDataDirRefuses(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer()
	ag := env.StartAgent(srv, srv.Token())
	b, err := os.ReadFile(ag.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(env.Dir, "second", "public", "api.sock")
	if err := os.MkdirAll(filepath.Join(env.Dir, "second"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(env.Dir, "second", "agent.hcl")
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(b), strconv.Quote(ag.SocketPath), strconv.Quote(sock), 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	p := env.StartProcess("hallmark-agent", "run", "-config", cfg, "-joinToken", srv.Token())
	log := refusal(t, p, agentServes(env, sock), "second agent on "+filepath.Join(ag.Dir, "data"))
	wantAll(t, log, filepath.Join(ag.Dir, "data"), "pid "+strconv.Itoa(ag.PID()))
	if err := ag.Healthy(); err != nil {
		t.Errorf("first agent: %v", err)
	}
}
