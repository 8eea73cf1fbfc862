package workloadapi_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hallmarkid/hallmark/agent/cache"
	"github.com/hallmarkid/hallmark/agent/peercred"
	hwapi "github.com/hallmarkid/hallmark/agent/workloadapi"
	"github.com/hallmarkid/hallmark/agent/workloadattest"
	"github.com/hallmarkid/hallmark/attestors/unix"
	"github.com/hallmarkid/hallmark/internal/telemetry"
	"github.com/hallmarkid/hallmark/internal/x509util"
	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/ca"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

type fixture struct {
	cache *cache.Cache
	ca    *ca.CA
	addr  string
}

// newFixture serves the Workload API on a real unix socket with the real
// peer-credential transport and unix attestor, over a cache filled by a
// real CA.
func newFixture(tb testing.TB) *fixture { tb.Helper(); return newFixtureWith(tb, nil) }

// newFixtureWith is newFixture with metrics wired as the agent wires them
// (RPC latency, stream gauge, attestation failures) when m is not nil.
func newFixtureWith(tb testing.TB, m *telemetry.Metrics) *fixture {
	tb.Helper()
	return newFixtureAttestor(tb, m, nil)
}

// newFixtureAttestor is newFixtureWith with the given caller attestor
// (nil: the unix attestor).
func newFixtureAttestor(tb testing.TB, m *telemetry.Metrics, wa *workloadattest.Attestor) *fixture {
	tb.Helper()
	authority, err := ca.New(ca.Config{TrustDomain: td, Dir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "wl")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "api.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		tb.Fatal(err)
	}
	c := cache.New()
	c.SetBundle(&cache.Bundle{TrustDomain: td, Certs: authority.Bundle(), DER: x509util.ConcatDER(authority.Bundle())})
	opts := append([]grpc.ServerOption{grpc.Creds(peercred.TransportCredentials())}, m.ServerOptions()...)
	srv := grpc.NewServer(append(opts, hwapi.ServerOptions()...)...)
	cfg := hwapi.Config{Cache: c, Attestor: workloadattest.New(nil, unix.New(unix.Config{})), PendingWait: time.Second}
	if m != nil {
		cfg.Attestor = workloadattest.New(nil, unix.New(unix.Config{})).OnFailure(m.WorkloadAttestationFailed)
		cfg.Metrics = m
	}
	if wa != nil {
		cfg.Attestor = wa
	}
	hwapi.New(cfg).Register(srv)
	go srv.Serve(l)
	tb.Cleanup(srv.Stop)
	return &fixture{cache: c, ca: authority, addr: "unix://" + sock}
}

func (f *fixture) add(tb testing.TB, id string, rev int64, ttl time.Duration, sels ...registration.Selector) {
	tb.Helper()
	f.addEntry(tb, registration.Entry{ID: id, Revision: rev, SPIFFEID: spiffeid.RequireFromString("spiffe://example.org/" + id),
		ParentID: spiffeid.RequireFromString("spiffe://example.org/agent/x"), Selectors: sels}, ttl)
}

// addEntry puts e in the cache with a fresh SVID for it.
func (f *fixture) addEntry(tb testing.TB, e registration.Entry, ttl time.Duration) {
	tb.Helper()
	id, rev := e.ID, e.Revision
	f.cache.UpdateEntries(false, []registration.Entry{e}, nil)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	certs, err := f.ca.SignX509SVID(context.Background(), ca.X509SVIDParams{ID: e.SPIFFEID, PublicKey: key.Public(), TTL: ttl})
	if err != nil {
		tb.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	f.cache.SetSVIDs(map[string]*cache.SVID{id: {ID: e.SPIFFEID, CertsDER: x509util.ConcatDER(certs), KeyDER: keyDER,
		IssuedAt: time.Now(), ExpiresAt: certs[0].NotAfter, EntryRevision: rev}})
}

func me() registration.Selector {
	return registration.Selector{Type: "unix", Value: fmt.Sprintf("uid:%d", os.Getuid())}
}

func TestFetchAndPushOnRotation(t *testing.T) {
	f := newFixture(t)
	f.add(t, "w", 1, time.Hour, me())
	f.add(t, "other", 1, time.Hour, registration.Selector{Type: "unix", Value: "uid:4242"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, err := workloadapi.New(ctx, workloadapi.WithAddr(f.addr))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	svids, err := client.FetchX509SVIDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(svids) != 1 || svids[0].ID.String() != "spiffe://example.org/w" {
		t.Fatalf("got %v; want only spiffe://example.org/w", svids)
	}

	got := make(chan string, 8)
	go client.WatchX509Context(ctx, watcher(func(c *workloadapi.X509Context) {
		got <- c.DefaultSVID().Certificates[0].SerialNumber.String()
	}))
	first := <-got
	f.add(t, "w", 1, time.Hour, me()) // rotation: same entry, new SVID
	select {
	case second := <-got:
		if second == first {
			t.Fatal("pushed the same SVID")
		}
	case <-ctx.Done():
		t.Fatal("rotation was not pushed")
	}
	// Unrelated changes are not pushed.
	f.add(t, "other", 1, time.Hour, registration.Selector{Type: "unix", Value: "uid:4242"})
	select {
	case s := <-got:
		t.Fatalf("pushed %s for an unrelated change", s)
	case <-time.After(200 * time.Millisecond):
	}
}

func TestPendingEntryWaitsThenDenies(t *testing.T) {
	f := newFixture(t)
	e := registration.Entry{ID: "pending", Revision: 1, SPIFFEID: spiffeid.RequireFromString("spiffe://example.org/p"),
		ParentID: spiffeid.RequireFromString("spiffe://example.org/agent/x"), Selectors: []registration.Selector{me()}}
	f.cache.UpdateEntries(false, []registration.Entry{e}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	_, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr(f.addr))
	if status.Code(err) != codes.PermissionDenied && (err == nil || !contains(err.Error(), "PermissionDenied")) {
		t.Fatalf("err = %v, want PermissionDenied", err)
	}
	if time.Since(start) < 900*time.Millisecond {
		t.Fatalf("denied after %s, want it to wait for the SVID first", time.Since(start))
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

type watcher func(*workloadapi.X509Context)

func (w watcher) OnX509ContextUpdate(c *workloadapi.X509Context) { w(c) }
func (w watcher) OnX509ContextWatchError(error)                  {}

// BenchmarkFetchX509SVID measures one stock client's sequential fetches
// against the in-process handler, and a plain gRPC round trip on the same
// socket as the baseline.
func BenchmarkFetchX509SVID(b *testing.B) {
	benchmarkFetchX509SVID(b, nil)
}

// BenchmarkFetchX509SVIDMetrics is BenchmarkFetchX509SVID with the agent's
// metrics recording every call: compare the two for the cost of metrics
// on the hot path.
func BenchmarkFetchX509SVIDMetrics(b *testing.B) {
	benchmarkFetchX509SVID(b, telemetry.New(telemetry.Config{Daemon: telemetry.Agent}))
}

func benchmarkFetchX509SVID(b *testing.B, m *telemetry.Metrics) {
	f := newFixtureWith(b, m)
	f.add(b, "w", 1, time.Hour, me())
	ctx := context.Background()
	client, err := workloadapi.New(ctx, workloadapi.WithAddr(f.addr))
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	b.ResetTimer()
	for b.Loop() {
		if _, err := client.FetchX509SVID(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
