package test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/hallmarkid/hallmark/internal/pgtest"
	"github.com/hallmarkid/hallmark/test/testenv"
)

// Two servers on one PostgreSQL database, behind load balancers, each with
// an agent: changes made on one reach agents of the other through the
// database's change feed, single-use tokens stay single use across both,
// and when a server is killed its agents fail over and keep rotating.
func TestHATwoServersOnePostgres(t *testing.T) {
	ds := postgresDatastore(t)
	env := testenv.New(t)
	a := env.StartServer(testenv.WithHCL(ds), manyAttestations)
	b := env.StartServer(testenv.WithHCL(ds), testenv.WithCAFrom(a), manyAttestations)
	lbA, lbB := env.StartLB(a, b), env.StartLB(b, a)
	agA := env.StartAgent(a, a.Token(), testenv.WithServerAddress(lbA.Address))
	agB := env.StartAgent(b, b.Token(), testenv.WithServerAddress(lbB.Address))

	// An entry created on A reaches the workload of B's agent.
	const crossID = "spiffe://example.org/ha/created-on-a"
	start := time.Now()
	a.CreateEntry(crossID, agB.ID(), "-selector", uidSelector())
	waitForSVID(t, agB.Addr(), crossID)
	t.Logf("entry on A → SVID at B's agent: %s", time.Since(start))
	// ...and its deletion on B stops it there.
	if out := b.MustCLI("entry", "show", "-spiffeID", crossID); !strings.Contains(out, "Found 1 entry") {
		t.Fatalf("server B does not list the entry created on A:\n%s", out)
	}

	// 100 concurrent uses of one token, spread over both servers.
	tok := a.Token()
	ca, cb := nodeClient(t, a), nodeClient(t, b)
	var wins, denied atomic.Int32
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := ca
			if i%2 == 1 {
				c = cb
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, _, err := attestWithToken(ctx, c, tok); err == nil {
				wins.Add(1)
			} else if strings.Contains(err.Error(), "invalid or expired join token") {
				denied.Add(1)
			} else {
				t.Errorf("unexpected: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 || denied.Load() != 99 {
		t.Fatalf("token across two servers: wins=%d denied=%d", wins.Load(), denied.Load())
	}

	// A's agent has a short-lived SVID; kill A and watch it keep rotating
	// through B.
	const rotID = "spiffe://example.org/ha/rotating"
	b.CreateEntry(rotID, agA.ID(), "-selector", uidSelector(), "-x509SVIDTTL", "4")
	waitForSVID(t, agA.Addr(), rotID)
	a.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(agA.Addr())))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	serials := map[string]bool{}
	deadline := time.Now().Add(12 * time.Second)
	for time.Now().Before(deadline) && len(serials) < 3 {
		svids := mustSVIDs(t, agA.Addr())
		for _, s := range svids {
			if s.ID.String() == rotID {
				if time.Now().After(s.Certificates[0].NotAfter) {
					t.Fatal("served an expired SVID after failover")
				}
				serials[s.Certificates[0].SerialNumber.String()] = true
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(serials) < 3 {
		t.Fatalf("after killing A, A's agent rotated %d times in 12 s; want ≥ 2 rotations via B", len(serials)-1)
	}
	// New entries still reach it, created on B.
	b.CreateEntry("spiffe://example.org/ha/after-failover", agA.ID(), "-selector", uidSelector())
	waitForSVID(t, agA.Addr(), "spiffe://example.org/ha/after-failover")
}

func mustSVIDs(t *testing.T, addr string) []*x509svid.SVID {
	t.Helper()
	c := fetch(t, addr)
	return c.SVIDs
}

// postgresDatastore returns the datastore block of a server on a fresh
// PostgreSQL database (pgtest starts the local cluster, installing it when
// needed), for several servers to share.
func postgresDatastore(tb testing.TB) string {
	tb.Helper()
	return `datastore {
  type              = "postgres"
  connection_string = "` + pgtest.Start(tb) + `"
}`
}
