package test

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/hallmarkid/hallmark/test/testenv"
)

func uidSelector() string { return fmt.Sprintf("unix:uid:%d", os.Getuid()) }

func fetch(t *testing.T, addr string) *workloadapi.X509Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := workloadapi.FetchX509Context(ctx, workloadapi.WithAddr(addr))
	if err != nil {
		t.Fatalf("FetchX509Context: %v", err)
	}
	return c
}

// waitForSVID polls with the stock client until the wanted ID is served.
func waitForSVID(t *testing.T, addr, want string) *workloadapi.X509Context {
	t.Helper()
	var got *workloadapi.X509Context
	testenv.WaitFor(t, 15*time.Second, "SVID "+want, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c, err := workloadapi.FetchX509Context(ctx, workloadapi.WithAddr(addr))
		if err != nil {
			return false
		}
		for _, s := range c.SVIDs {
			if s.ID.String() == want {
				got = c
				return true
			}
		}
		return false
	})
	return got
}

func TestWorkloadGetsSVIDEndToEnd(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer()
	ag := env.StartAgent(srv, srv.Token())

	const want = "spiffe://example.org/workload/e2e"
	srv.CreateEntry(want, ag.ID(), "-selector", uidSelector(), "-dns", "e2e.example.org")
	c := waitForSVID(t, ag.Addr(), want)

	svid := c.DefaultSVID()
	if svid.ID.String() != want {
		t.Fatalf("SVID ID = %s, want %s", svid.ID, want)
	}
	bundle, err := c.Bundles.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString(testenv.TrustDomain))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := x509svid.Verify(svid.Certificates, bundle); err != nil {
		t.Fatalf("SVID does not verify against the bundle: %v", err)
	}
	leaf := svid.Certificates[0]
	if len(leaf.URIs) != 1 || leaf.IsCA || leaf.KeyUsage&x509.KeyUsageCertSign != 0 {
		t.Fatalf("leaf not SPIFFE-conformant: URIs=%v IsCA=%v KeyUsage=%v", leaf.URIs, leaf.IsCA, leaf.KeyUsage)
	}
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "e2e.example.org" {
		t.Fatalf("DNS names = %v", leaf.DNSNames)
	}

	// The CLI prints the same identity.
	out, err := ag.CLI("api", "fetch", "x509", "-socketPath", ag.SocketPath, "-write", t.TempDir())
	if err != nil || !strings.Contains(out, want) {
		t.Fatalf("api fetch x509: %v\n%s", err, out)
	}
	// The agent shows up in agent list.
	if out := srv.MustCLI("agent", "list"); !strings.Contains(out, ag.ID()) {
		t.Fatalf("agent list does not show %s:\n%s", ag.ID(), out)
	}
}

func TestRotationPushedToX509Source(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer()
	ag := env.StartAgent(srv, srv.Token())
	const want = "spiffe://example.org/workload/rotating"
	srv.CreateEntry(want, ag.ID(), "-selector", uidSelector(), "-x509SVIDTTL", "4")
	waitForSVID(t, ag.Addr(), want)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(ag.Addr())))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	first, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	serials := map[string]bool{first.Certificates[0].SerialNumber.String(): true}
	// With a 4 s TTL the agent rotates at ~2 s: expect two rotations in 7 s,
	// and the source must never hold an expired SVID.
	deadline := time.Now().Add(7 * time.Second)
	for time.Now().Before(deadline) && len(serials) < 3 {
		s, err := src.GetX509SVID()
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().After(s.Certificates[0].NotAfter) {
			t.Fatalf("X509Source holds an expired SVID (expired %s)", s.Certificates[0].NotAfter)
		}
		serials[s.Certificates[0].SerialNumber.String()] = true
		time.Sleep(50 * time.Millisecond)
	}
	if len(serials) < 3 {
		t.Fatalf("saw %d distinct SVIDs in 7 s, want ≥ 3 (two rotations)", len(serials))
	}
}

func TestAgentRestartKeepsIdentity(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer()
	ag := env.StartAgent(srv, srv.Token())
	const want = "spiffe://example.org/workload/restart"
	srv.CreateEntry(want, ag.ID(), "-selector", uidSelector())
	waitForSVID(t, ag.Addr(), want)

	// The join token is spent: the restarted agent must reuse its persisted
	// SVID rather than attest again.
	ag.Restart()
	waitForSVID(t, ag.Addr(), want)
	if strings.Contains(ag.Log(), "Node attested") {
		t.Fatalf("restarted agent attested again:\n%s", ag.Log())
	}
	out := srv.MustCLI("agent", "list")
	if strings.Count(out, "SPIFFE ID") != 1 || !strings.Contains(out, ag.ID()) {
		t.Fatalf("want exactly the one agent %s:\n%s", ag.ID(), out)
	}
}

func TestServerOutageServesCachedSVIDsAndResumes(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer()
	ag := env.StartAgent(srv, srv.Token())
	const want = "spiffe://example.org/workload/outage"
	srv.CreateEntry(want, ag.ID(), "-selector", uidSelector())
	before := waitForSVID(t, ag.Addr(), want)

	srv.Kill() // SIGKILL: no goodbye to the agent.
	during := fetch(t, ag.Addr())
	if during.DefaultSVID().ID.String() != want ||
		during.DefaultSVID().Certificates[0].SerialNumber.Cmp(before.DefaultSVID().Certificates[0].SerialNumber) != 0 {
		t.Fatalf("during the outage the agent served %v, want the cached %s", during.DefaultSVID().ID, want)
	}
	if err := ag.Healthy(); err != nil {
		t.Fatalf("agent unhealthy during server outage with a valid SVID: %v", err)
	}

	srv.Start()
	// The push stream resumes: a new entry reaches the workload.
	const second = "spiffe://example.org/workload/after-outage"
	srv.CreateEntry(second, ag.ID(), "-selector", uidSelector())
	waitForSVID(t, ag.Addr(), second)
}

func TestEntryRemovedStopsSVID(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer()
	ag := env.StartAgent(srv, srv.Token())
	keep := "spiffe://example.org/workload/keep"
	drop := "spiffe://example.org/workload/drop"
	srv.CreateEntry(keep, ag.ID(), "-selector", uidSelector())
	dropID := srv.CreateEntry(drop, ag.ID(), "-selector", uidSelector())
	waitForSVID(t, ag.Addr(), drop)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	updates := make(chan []string, 16)
	client, err := workloadapi.New(ctx, workloadapi.WithAddr(ag.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	go func() {
		_ = client.WatchX509Context(ctx, watcher(func(c *workloadapi.X509Context) {
			var ids []string
			for _, s := range c.SVIDs {
				ids = append(ids, s.ID.String())
			}
			updates <- ids
		}))
	}()
	waitUpdate := func(cond func([]string) bool) []string {
		for {
			select {
			case ids := <-updates:
				if cond(ids) {
					return ids
				}
			case <-ctx.Done():
				t.Fatal("timed out waiting for a Workload API update")
			}
		}
	}
	waitUpdate(func(ids []string) bool { return len(ids) == 2 })
	srv.MustCLI("entry", "delete", "-entryID", dropID)
	ids := waitUpdate(func(ids []string) bool { return len(ids) == 1 })
	if ids[0] != keep {
		t.Fatalf("after delete the stream carries %v, want only %s", ids, keep)
	}
}

type watcher func(*workloadapi.X509Context)

func (w watcher) OnX509ContextUpdate(c *workloadapi.X509Context) { w(c) }
func (w watcher) OnX509ContextWatchError(error)                  {}

func TestNoMatchingEntryIsPermissionDenied(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer()
	ag := env.StartAgent(srv, srv.Token())
	srv.CreateEntry("spiffe://example.org/someone-else", ag.ID(), "-selector", "unix:uid:424242")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr(ag.Addr()))
	if err == nil || !strings.Contains(err.Error(), "PermissionDenied") {
		t.Fatalf("err = %v, want PermissionDenied", err)
	}
}

func TestJoinTokenSingleUse(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer()
	tok := srv.Token()
	env.StartAgent(srv, tok)
	second := env.StartAgent(srv, tok, testenv.NoWait())
	testenv.WaitFor(t, 20*time.Second, "second agent to give up", second.Exited)
	if !strings.Contains(second.Log(), "invalid or expired join token") {
		t.Fatalf("second agent with a spent token: want the invalid-token error, log:\n%s", second.Log())
	}
}

func fetchErr(addr string) (*workloadapi.X509Context, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return workloadapi.FetchX509Context(ctx, workloadapi.WithAddr(addr))
}
