package fleet_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/internal/pgtest"
	"github.com/hallmarkid/hallmark/internal/x509util"
	"github.com/hallmarkid/hallmark/test/fleet"
	"github.com/hallmarkid/hallmark/test/testenv"
)

// fleetLimits is the setting for a fleet benchmark: every simulated agent
// connects from 127.0.0.1, so the per-source limits (which a real fleet,
// one node per address, never meets) are raised to the global ones; the
// global limits keep their defaults, so a storm is shed and retried as it
// would be in production (docs/scale.md).
const fleetLimits = `attestation_rate_per_source = 100000
attestation_burst_per_source = 100000
max_unauthenticated_connections_per_source = 256`

// scenario is one fleet run's parameters.
type scenario struct {
	agents, perAgent, shared int
	backend                  string // "sqlite" or "postgres" (two servers behind a balancer)
	samples                  int    // one-entry changes timed
	idle                     time.Duration
	agentTTL                 string // agent_svid_ttl ("" = default)
}

// figure is one measured value with the load average it was measured
// under.
type figure struct {
	name, value, load string
}

// result is what a run measured.
type result struct {
	sc      scenario
	figures []figure
	counts  fleet.Counts
}

func (r *result) add(name, format string, args ...any) {
	f := figure{name: name, value: fmt.Sprintf(format, args...), load: fleet.LoadAvg()}
	r.figures = append(r.figures, f)
}

// servers starts the backend: one server on SQLite, or two on one
// PostgreSQL database sharing a CA behind a round-robin balancer. It
// returns the servers and the address agents dial.
func servers(tb testing.TB, env *testenv.Env, sc scenario) ([]*testenv.Server, string, string) {
	extra := os.Getenv("FLEET_SERVER_HCL")
	var limits []string
	for _, line := range strings.Split(fleetLimits, "\n") {
		if key, _, _ := strings.Cut(line, " "); !strings.Contains(extra, key) {
			limits = append(limits, line) // FLEET_SERVER_HCL overrides
		}
	}
	opts := []testenv.ServerOption{testenv.WithLogLevel("warn"), testenv.WithServerHCL(strings.Join(limits, "\n"))}
	if sc.agentTTL != "" {
		opts = append(opts, testenv.WithServerHCL(fmt.Sprintf("agent_svid_ttl = %q", sc.agentTTL)))
	}
	if extra != "" {
		// Experiments: other limits, say (docs/scale.md).
		opts = append(opts, testenv.WithServerHCL(extra))
	}
	optsA := opts
	if addr := os.Getenv("HALLMARK_PPROF_ADDR"); testenv.Pprof && addr != "" {
		// One profiling listener: the first server's.
		optsA = append(slices.Clone(opts), testenv.WithServerEnv("HALLMARK_PPROF_ADDR="+addr))
	}
	if sc.backend != "postgres" {
		s := env.StartServer(optsA...)
		return []*testenv.Server{s}, s.Address, ""
	}
	pgURL := pgtest.Start(tb)
	ds := testenv.WithHCL(`datastore {
  type              = "postgres"
  connection_string = "` + pgURL + `"
}`)
	a := env.StartServer(append(optsA, ds)...)
	b := env.StartServer(append(opts, ds, testenv.WithCAFrom(a))...)
	lb, err := fleet.NewBalancer(a.Address, b.Address)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { lb.Close() })
	return []*testenv.Server{a, b}, lb.Address(), pgURL
}

// pgLoad returns the database's transactions and rows read so far
// (pg_stat_database), or zeros without PostgreSQL. A backend that goes
// idle flushes its statistics within 10 s (PostgreSQL 15), so this waits
// 11 s first.
type pgLoad struct{ xacts, rows int64 }

func pgStats(tb testing.TB, url string) pgLoad {
	if url == "" {
		return pgLoad{}
	}
	time.Sleep(11 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	var l pgLoad
	if err := conn.QueryRow(ctx, `SELECT xact_commit + xact_rollback, tup_returned + tup_fetched
		FROM pg_stat_database WHERE datname = current_database()`).Scan(&l.xacts, &l.rows); err != nil {
		tb.Fatal(err)
	}
	return l
}

func (l pgLoad) since(before pgLoad, changes int) string {
	return fmt.Sprintf("PostgreSQL per change: %.1f transactions, %.0f rows read",
		float64(l.xacts-before.xacts-1)/float64(changes), float64(l.rows-before.rows)/float64(changes))
}

// run runs the whole scenario against real servers and returns its
// figures. Goals are not asserted here: a missed goal is a figure, and
// the smoke test asserts only what must hold at any speed.
func run(tb testing.TB, sc scenario) *result {
	env := testenv.New(tb)
	srvs, addr, pgURL := servers(tb, env, sc)
	admin := srvs[0].Admin()
	td := spiffeid.RequireTrustDomainFromString(srvs[0].TrustDomain)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := &result{sc: sc}

	t0 := time.Now()
	layout, err := fleet.Provision(ctx, admin, td, sc.agents, sc.perAgent, sc.shared)
	if err != nil {
		tb.Fatal(err)
	}
	res.add("provision (tokens + entries)", "%.2f s for %d entries", time.Since(t0).Seconds(), layout.Entries())
	bundle, err := admin.GetBundle(ctx, &apiv1.GetBundleRequest{})
	if err != nil {
		tb.Fatal(err)
	}
	certs, err := x509util.ParseChain(bundle.GetX509Authorities())
	if err != nil {
		tb.Fatal(err)
	}
	for _, s := range srvs {
		testenv.WaitIdle(tb, s.PID(), 5*time.Minute) // HA peers load the entries from the feed
	}
	f, err := fleet.New(fleet.Config{Address: addr, TrustDomain: td, Bundle: certs, Tokens: layout.Tokens})
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Stop()
	wait := func(what string, cond func(*fleet.Agent) bool) time.Duration {
		tb.Helper()
		start := time.Now()
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Minute)
		defer wcancel()
		if err := f.WaitAll(wctx, cond); err != nil {
			tb.Fatalf("%s: %v (first fleet error: %v)", what, err, f.FirstError())
		}
		return time.Since(start)
	}
	perAgentSVIDs := int64(sc.perAgent + sc.shared)

	// 1. Attestation storm: every agent starts at once.
	cpu0, gen0 := cpuTicks(tb, srvs), selfCPU(tb)
	start := time.Now()
	prof, genProf := profile(tb, "storm", 10*time.Second), generatorProfile(tb, "storm")
	f.Start(ctx)
	wait("storm", fleet.Synced)
	genProf()
	prof()
	storm := time.Since(start)
	c := f.Counts()
	res.add("attestation storm → all hold their SVIDs", "%.2f s, %d errors, %d shed+retried (%d before TLS), %d SVIDs (want %d)",
		storm.Seconds(), c.Errors(), c.Busy, c.AttestBusy, c.Signed, perAgentSVIDs*int64(sc.agents))
	stormServer, stormGen := float64(cpuTicks(tb, srvs)-cpu0)/100, (selfCPU(tb) - gen0).Seconds()
	// The generator shares the cores: the server's own CPU over the cores
	// is the storm's floor on this machine without it.
	res.add("storm: CPU used", "server %.1f s (%.0f %% of all CPU used; alone on %d cores ≥ %.1f s), generator %.1f s",
		stormServer, 100*stormServer/(stormServer+stormGen), runtime.NumCPU(), stormServer/float64(runtime.NumCPU()), stormGen)

	// 2. Idle: CPU over the window, then RSS.
	for _, s := range srvs {
		testenv.WaitIdle(tb, s.PID(), 2*time.Minute)
	}
	cpu0 = cpuTicks(tb, srvs)
	time.Sleep(sc.idle)
	idle := float64(cpuTicks(tb, srvs)-cpu0) / 100 / sc.idle.Seconds() * 100 / float64(len(srvs))
	res.add("server idle CPU, all agents connected", "%.2f %% of a core (per server, %s window)", idle, sc.idle)
	var rss []string
	for _, s := range srvs {
		n, err := testenv.RSSBytes(s.PID())
		if err != nil {
			tb.Fatal(err)
		}
		rss = append(rss, fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)))
	}
	res.add("server RSS", "%s (%d agents, %d entries)", strings.Join(rss, " + "), sc.agents, layout.Entries())
	heapProfile(tb)

	// 3. One entry changed → its agent holds the new SVID.
	pg0 := pgStats(tb, pgURL)
	prof = profile(tb, "change", 3*time.Second)
	lat := make([]time.Duration, 0, sc.samples)
	for k := range sc.samples {
		i := mrand.IntN(sc.agents)
		e := layout.Own[i][mrand.IntN(len(layout.Own[i]))]
		rev := updateEntry(tb, admin, e, k)
		a := f.Agents[i]
		start := time.Now()
		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		err := fleet.WaitAgent(wctx, a, func(a *fleet.Agent) bool { return a.HoldsSVID(e.GetId(), rev.rev) })
		wcancel()
		if err != nil {
			tb.Fatal(err)
		}
		lat = append(lat, time.Since(start)+rev.took)
	}
	prof()
	res.add("one entry changed → its agent holds the new SVID", "p50 %.1f ms, p99 %.1f ms (%d samples)",
		ms(percentile(lat, 0.5)), ms(percentile(lat, 0.99)), len(lat))
	if pgURL != "" {
		res.add("one entry changed: database load", "%s", pgStats(tb, pgURL).since(pg0, len(lat)))
	}

	// 4. Shared (node-alias) entry changed → every agent holds it.
	if sc.shared > 0 {
		pg0 := pgStats(tb, pgURL)
		rev := updateEntry(tb, admin, layout.Shared[0], 1)
		d := wait("shared entry", func(a *fleet.Agent) bool { return a.HoldsSVID(layout.Shared[0].GetId(), rev.rev) })
		res.add("shared node-alias entry changed → all agents hold it", "%.2f s", (d + rev.took).Seconds())
		if pgURL != "" {
			res.add("shared entry changed: database load", "%s", pgStats(tb, pgURL).since(pg0, 1))
		}
	}

	// 5. localauthority x509 prepare → every agent holds the new bundle.
	start = time.Now()
	la, err := admin.PrepareX509Authority(ctx, &apiv1.PrepareLocalAuthorityRequest{})
	if err != nil {
		tb.Fatal(err)
	}
	wait("prepared authority", func(a *fleet.Agent) bool { return a.HoldsAuthority(la.GetAuthorityId()) })
	res.add("x509 prepare → all agents hold the new bundle", "%.2f s", time.Since(start).Seconds())

	// 6. Signing under load: every agent re-mints every SVID (fresh
	// keys and CSRs), with the whole fleet connected; the server's CPU
	// per SVID against x509.CreateCertificate's in this process.
	for _, s := range srvs {
		testenv.WaitIdle(tb, s.PID(), 2*time.Minute)
	}
	signed0 := f.Counts().Signed
	cpu0, gen0 = cpuTicks(tb, srvs), selfCPU(tb)
	start = time.Now()
	prof = profile(tb, "remint", 8*time.Second)
	f.Remint()
	wait("re-mint", fleet.Synced)
	prof()
	took := time.Since(start)
	n := f.Counts().Signed - signed0
	serverPer := time.Duration(float64(cpuTicks(tb, srvs)-cpu0) * 1e7 / float64(n))
	serverCPU, genCPU := float64(cpuTicks(tb, srvs)-cpu0)/100, (selfCPU(tb) - gen0).Seconds()
	raw := rawCreateCertificate(tb, 2000)
	res.add("workload SVID signing under load", "%d SVIDs in %.2f s = %.0f/s wall; server CPU %.0f µs/SVID vs raw x509.CreateCertificate %.0f µs: %.2f×",
		n, took.Seconds(), float64(n)/took.Seconds(), us(serverPer), us(raw), float64(raw)/float64(serverPer))
	res.add("re-mint: CPU used", "server %.1f s, generator %.1f s", serverCPU, genCPU)

	// 7. Server restart → every agent resynced, nothing re-minted.
	signed0 = f.Counts().Signed
	streams := make([]int, len(f.Agents))
	for i, a := range f.Agents {
		streams[i] = a.State().Streams
	}
	busy0, reconnects0, notListening0 := f.Counts().SyncBusy, f.Counts().Reconnects, f.Counts().SyncNotListening
	f.StreamEnds()
	// The restarted server's CPU is counted from its start; the others'
	// from now.
	cpu0, gen0 = cpuTicks(tb, srvs[1:]), selfCPU(tb)
	start = time.Now()
	srvs[0].Stop()
	stopped := time.Since(start)
	if len(srvs) > 1 {
		// The agents of the stopped server now see their streams end;
		// those of the other server keep theirs and are waited for only
		// as "synced".
		time.Sleep(500 * time.Millisecond)
	}
	srvs[0].Start()
	ready := time.Since(start)
	wait("restart", func(a *fleet.Agent) bool {
		st := a.State()
		return st.Synced() && (st.Streams > streams[a.Index] || len(srvs) > 1)
	})
	moved := 0
	what := "server restart"
	if len(srvs) > 1 {
		what = "restart of server A (its agents move to B)"
	}
	var back []time.Duration
	for _, a := range f.Agents {
		if a.State().Streams > streams[a.Index] {
			moved++
			back = append(back, a.StreamAt().Sub(start))
		}
	}
	resynced := time.Since(start)
	restartServer, restartGen := float64(cpuTicks(tb, srvs)-cpu0)/100, (selfCPU(tb) - gen0).Seconds()
	res.add(what+" → all agents resynced", "%.2f s (stopped after %.2f s, ready after %.2f s; %d agents reconnected, p50 %.2f s, p90 %.2f s, last %.2f s), %d SVIDs re-minted",
		resynced.Seconds(), stopped.Seconds(), ready.Seconds(), moved, percentile(back, 0.5).Seconds(), percentile(back, 0.9).Seconds(),
		percentile(back, 1).Seconds(), f.Counts().Signed-signed0)
	res.add("restart: reconnect attempts, CPU used", "%d failed attempts (%d refused busy before TLS, %d found nothing listening); server %.1f s (the restarted one from its start), generator %.1f s",
		f.Counts().Reconnects-reconnects0-int64(moved), f.Counts().SyncBusy-busy0, f.Counts().SyncNotListening-notListening0, restartServer, restartGen)
	var ends []string
	for msg, n := range f.StreamEnds() {
		ends = append(ends, fmt.Sprintf("%d × %s", n, strings.ReplaceAll(msg, "|", "/")))
	}
	slices.Sort(ends)
	res.add("restart: streams ended and other failed attempts", "%s", strings.Join(ends, "; "))
	res.counts = f.Counts()
	if res.counts.Errors() > 0 {
		res.add("errors", "%+v, first: %v", res.counts, f.FirstError())
	}
	return res
}

// generatorProfile, when FLEET_PROFILE_DIR is set, takes a CPU profile
// of this process (the generator) into FLEET_PROFILE_DIR/generator-name.pprof
// until the function returned is called.
func generatorProfile(tb testing.TB, name string) func() {
	dir := os.Getenv("FLEET_PROFILE_DIR")
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, "generator-"+name+".pprof"))
	if err != nil {
		tb.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		tb.Logf("generator profile %s: %v", name, err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

// profile, when the server serves pprof (HALLMARK_PPROF=1 with
// HALLMARK_PPROF_ADDR) and FLEET_PROFILE_DIR is set, takes a CPU profile
// of the first server over the next d into FLEET_PROFILE_DIR/name.pprof;
// the function returned waits for it.
func profile(tb testing.TB, name string, d time.Duration) func() {
	addr, dir := os.Getenv("HALLMARK_PPROF_ADDR"), os.Getenv("FLEET_PROFILE_DIR")
	if !testenv.Pprof || addr == "" || dir == "" {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, int(d.Seconds())))
		if err != nil {
			tb.Logf("profile %s: %v", name, err)
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, name+".pprof"), b, 0o644)
		}
		if err != nil {
			tb.Logf("profile %s: %v", name, err)
		}
	}()
	return func() { <-done }
}

// heapProfile saves the first server's heap profile as
// FLEET_PROFILE_DIR/heap.pprof, when profiling (see profile).
func heapProfile(tb testing.TB) {
	addr, dir := os.Getenv("HALLMARK_PPROF_ADDR"), os.Getenv("FLEET_PROFILE_DIR")
	if !testenv.Pprof || addr == "" || dir == "" {
		return
	}
	resp, err := http.Get("http://" + addr + "/debug/pprof/heap")
	if err != nil {
		tb.Logf("heap profile: %v", err)
		return
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "heap.pprof"), b, 0o644)
	}
	if err != nil {
		tb.Logf("heap profile: %v", err)
	}
}

// revision is an entry update's new revision and how long the update
// call took (part of the change → agent latency).
type revision struct {
	rev  int64
	took time.Duration
}

func updateEntry(tb testing.TB, admin apiv1.AdminClient, e *apiv1.Entry, k int) revision {
	tb.Helper()
	u := proto.Clone(e).(*apiv1.Entry)
	u.X509SvidTtl = int32(3600 + 1 + k%2)
	start := time.Now()
	resp, err := admin.UpdateEntries(context.Background(), &apiv1.UpdateEntriesRequest{Entries: []*apiv1.Entry{u}})
	if err != nil || resp.GetResults()[0].GetError() != "" {
		tb.Fatalf("update %s: %v %v", e.GetId(), err, resp)
	}
	return revision{rev: resp.GetResults()[0].GetEntry().GetRevision(), took: time.Since(start)}
}

func cpuTicks(tb testing.TB, srvs []*testenv.Server) int64 {
	var sum int64
	for _, s := range srvs {
		n, err := testenv.CPUTicks(s.PID())
		if err != nil {
			tb.Fatal(err)
		}
		sum += n
	}
	return sum
}

// rawCreateCertificate returns the mean CPU cost of x509.CreateCertificate
// for an SVID-shaped leaf under a P-256 CA: the CPU time of this thread
// (RUSAGE_THREAD), so that a busy machine does not inflate it.
func rawCreateCertificate(tb testing.TB, n int) time.Duration {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		tb.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse("spiffe://example.org/fleet/a1/w1")
	cpu0 := threadCPU(tb)
	for i := range n {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{Organization: []string{"SPIRE"}},
			URIs: []*url.URL{u}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, BasicConstraintsValid: true}
		if _, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, leafKey.Public(), caKey); err != nil {
			tb.Fatal(err)
		}
	}
	return (threadCPU(tb) - cpu0) / time.Duration(n)
}

// selfCPU returns the CPU time of this process (the generator).
func selfCPU(tb testing.TB) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func threadCPU(tb testing.TB) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }
