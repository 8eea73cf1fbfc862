package test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/hallmarkid/hallmark/test/testenv"
)

func fdCount(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// 10,000 callers without an identity are refused, and the agent keeps no
// file descriptor of theirs.
func TestFailedAttestationsLeakNoFDs(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer()
	ag := env.StartAgent(srv, srv.Token())
	srv.CreateEntry("spiffe://example.org/not-us", ag.ID(), "-selector", "unix:uid:4242")
	ctx := context.Background()
	client, err := workloadapi.New(ctx, workloadapi.WithAddr(ag.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	// Warm up so lazily opened descriptors are counted in the baseline.
	if _, err := client.FetchX509SVID(ctx); err == nil {
		t.Fatal("caller without an entry got an SVID")
	}
	before := fdCount(t, ag.PID())
	for i := range 10000 {
		if _, err := client.FetchX509SVID(ctx); err == nil || !strings.Contains(err.Error(), "PermissionDenied") {
			t.Fatalf("call %d: %v, want PermissionDenied", i, err)
		}
	}
	client.Close()
	// Fresh connections too: each one has its own pidfd.
	for range 200 {
		c, err := workloadapi.New(ctx, workloadapi.WithAddr(ag.Addr()))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.FetchX509SVID(ctx)
		c.Close()
	}
	testenv.WaitFor(t, 5*time.Second, "agent fd count back to baseline", func() bool {
		return fdCount(t, ag.PID()) <= before
	})
}

func TestKeyFilesAndSocketsAreOwnerOnly(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer()
	ag := env.StartAgent(srv, srv.Token())

	checkMode := func(path string, want os.FileMode) {
		t.Helper()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %o, want %o", path, got, want)
		}
	}
	checkMode(filepath.Join(srv.Dir, "data", "ca", "ca-key.pem"), 0o600)
	checkMode(filepath.Dir(srv.SocketPath), 0o700)
	checkMode(srv.SocketPath, 0o600)
	checkMode(filepath.Join(ag.Dir, "data"), 0o700)
	checkMode(filepath.Join(ag.Dir, "data", "agent_key.pem"), 0o600)
	checkMode(filepath.Join(ag.Dir, "data", "agent_svid.pem"), 0o600)
}

func TestServerRefusesSymlinkedSocket(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer()
	srv.Stop()
	// Replace the admin socket with a symlink to somewhere else.
	target := filepath.Join(env.Dir, "elsewhere.sock")
	if err := os.Remove(srv.SocketPath); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if err := os.Symlink(target, srv.SocketPath); err != nil {
		t.Fatal(err)
	}
	p := env.StartProcess("hallmark-server", "run", "-config", srv.ConfigPath)
	testenv.WaitFor(t, 10*time.Second, "server to refuse", p.Exited)
	if !strings.Contains(p.Log(), "is a symlink") {
		t.Fatalf("want a symlink refusal, log:\n%s", p.Log())
	}
	if _, err := os.Lstat(target); !os.IsNotExist(err) {
		t.Fatalf("something was created at the symlink target: %v", err)
	}
}

func TestBadConfigStopsStartupWithFileLine(t *testing.T) {
	env := testenv.New(t)
	path := filepath.Join(env.Dir, "bad.hcl")
	if err := os.WriteFile(path, []byte("server {\n  trust_domain = \"example.org\"\n  data_dir = \"/tmp/x\"\n  bogus = 1\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := env.StartProcess("hallmark-server", "run", "-config", path)
	testenv.WaitFor(t, 10*time.Second, "server to exit", p.Exited)
	if !strings.Contains(p.Log(), "bad.hcl:4") || !strings.Contains(p.Log(), "bogus") {
		t.Fatalf("want an error naming bad.hcl:4 and the key, log:\n%s", p.Log())
	}
}

// The agent renews its own SVID at half-life without re-attesting (its
// join token is spent) and workloads keep their identities throughout.
func TestAgentSVIDRenewal(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer(testenv.WithServerHCL(`agent_svid_ttl = "4s"`))
	ag := env.StartAgent(srv, srv.Token())
	const want = "spiffe://example.org/workload/renewal"
	srv.CreateEntry(want, ag.ID(), "-selector", uidSelector())
	waitForSVID(t, ag.Addr(), want)
	serial := func() string {
		out := srv.MustCLI("agent", "list")
		for _, line := range strings.Split(out, "\n") {
			if v, ok := strings.CutPrefix(line, "Serial number     : "); ok {
				return v
			}
		}
		t.Fatalf("no serial in %q", out)
		return ""
	}
	first := serial()
	testenv.WaitFor(t, 10*time.Second, "agent SVID renewal", func() bool { return serial() != first })
	second := serial()
	testenv.WaitFor(t, 10*time.Second, "second agent SVID renewal", func() bool { return serial() != second })
	// The sync stream and signing work with the renewed SVID.
	const later = "spiffe://example.org/workload/after-renewal"
	srv.CreateEntry(later, ag.ID(), "-selector", uidSelector())
	waitForSVID(t, ag.Addr(), later)
	if err := ag.Healthy(); err != nil {
		t.Fatal(err)
	}
}
