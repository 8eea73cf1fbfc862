package test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/test/testenv"
	"github.com/hallmarkid/hallmark/tpm/tpmtest"
)

// The Node API's unauthenticated path (issue #12, item 4): what anyone who
// can reach the port can make the server hold, before any identity.

const attestMethod = "/hallmark.v1.Node/Attest"

// manyAttestations lifts the per-source attestation limits for tests that
// attest many times at once from 127.0.0.1 (token races, benchmarks).
var manyAttestations = testenv.WithServerHCL(`attestation_rate_per_source = 100000
attestation_burst_per_source = 100000
max_inflight_attestations = 256
max_unauthenticated_connections_per_source = 256`)

// limitsServer starts a server with a telemetry listener (go_goroutines)
// and returns it with its metrics address.
func limitsServer(t testing.TB, env *testenv.Env, opts ...testenv.ServerOption) (*testenv.Server, string) {
	t.Helper()
	metrics := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	opts = append(opts, testenv.WithHCL(`telemetry { listen_address = "`+metrics+`" }`))
	return env.StartServer(opts...), metrics
}

// metricValue reads one unlabelled series from a /metrics endpoint.
func metricValue(t testing.TB, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return 0
}

// procMiB reads a /proc/<pid>/status field (VmRSS, VmHWM) in MiB.
// rssBound is a memory bound in MiB for the server; the race detector
// multiplies a Go program's memory by several times, so under `make race`
// the bound is four times looser (the point there is races, not bytes).
func rssBound(mib float64) float64 {
	if testenv.Race {
		return 4 * mib
	}
	return mib
}

func procMiB(t testing.TB, pid int, field string) float64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return float64(kb) / 1024
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// source returns the n-th loopback source address used by a test: every
// 127/8 address is a different client to the server.
func source(block, n int) string { return fmt.Sprintf("127.%d.%d.%d", 10+block, n/250, 2+n%250) }

// floodResult is what a flood achieved.
type floodResult struct {
	conns   []*testenv.FloodConn
	refused int // connections the server closed or refused before HTTP/2
	streams int // streams opened
}

// openStreams counts streams neither ended by the server nor on a closed
// connection: what the server is holding for the flood.
func (r *floodResult) openStreams(ids map[*testenv.FloodConn][]uint32) int {
	n := 0
	for _, c := range r.conns {
		if c.IsClosed() {
			continue
		}
		ended := c.Ended()
		for _, id := range ids[c] {
			if _, done := ended[id]; !done {
				n++
			}
		}
	}
	return n
}

func (r *floodResult) close() {
	for _, c := range r.conns {
		c.Close()
	}
}

// flood opens sources × connsPerSource raw HTTP/2 connections and
// streamsPerConn idle Attest streams on each, 32 dials at a time.
func flood(t testing.TB, addr string, block, sources, connsPerSource, streamsPerConn int) (*floodResult, map[*testenv.FloodConn][]uint32) {
	t.Helper()
	res := &floodResult{}
	ids := map[*testenv.FloodConn][]uint32{}
	var mu sync.Mutex
	work := make(chan string)
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for src := range work {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				c, err := testenv.DialFlood(ctx, addr, src)
				cancel()
				if err != nil {
					mu.Lock()
					res.refused++
					mu.Unlock()
					continue
				}
				got, _ := c.Open(attestMethod, streamsPerConn)
				mu.Lock()
				res.conns = append(res.conns, c)
				ids[c] = got
				res.streams += len(got)
				mu.Unlock()
			}
		}()
	}
	for s := range sources {
		for range connsPerSource {
			work <- source(block, s)
		}
	}
	close(work)
	wg.Wait()
	t.Cleanup(res.close)
	return res, ids
}

// anonNode is a Node API client without a client certificate, dialing
// from the loopback address src, closed at cleanup.
func anonNode(t testing.TB, addr, src string) apiv1.NodeClient {
	t.Helper()
	node, closeNode := anonNodeConn(t, addr, src)
	t.Cleanup(closeNode)
	return node
}

// anonNodeConn is anonNode with its close function.
func anonNodeConn(t testing.TB, addr, src string) (apiv1.NodeClient, func()) {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})), //nolint:gosec // not under test
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) }),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	return apiv1.NewNodeClient(conn), func() { conn.Close() }
}

// attestOnce sends one Attest first message and returns the status the
// server ends the stream with.
func attestOnce(ctx context.Context, node apiv1.NodeClient, params *apiv1.AttestParams) error {
	stream, err := node.Attest(ctx)
	if err != nil {
		return err
	}
	if err := stream.Send(&apiv1.AttestRequest{Step: &apiv1.AttestRequest_Params{Params: params}}); err != nil {
		_, rerr := stream.Recv()
		if rerr != nil {
			return rerr
		}
		return err
	}
	_, err = stream.Recv()
	return err
}

// (a) Ten thousand idle anonymous Attest streams from a hundred sources:
// the server holds at most the in-flight bound of them, refuses the rest
// at once, ends the ones it holds at the first-message deadline, and its
// goroutines and memory stay bounded throughout.
func TestNodeAPIIdleAnonymousStreamsAreBounded(t *testing.T) {
	env := testenv.New(t)
	srv, metrics := limitsServer(t, env)
	g0 := metricValue(t, metrics, "go_goroutines")
	rss0 := procMiB(t, srv.PID(), "VmRSS")

	start := time.Now()
	res, ids := flood(t, srv.Address, 0, 100, 10, 10)
	time.Sleep(time.Second)
	held := res.openStreams(ids)
	g1 := metricValue(t, metrics, "go_goroutines")
	hwm := procMiB(t, srv.PID(), "VmHWM")
	t.Logf("flood of %d streams on %d connections (%d refused) in %v: server holds %d streams, goroutines %v → %v, RSS %.1f MiB → peak %.1f MiB",
		res.streams, len(res.conns), res.refused, time.Since(start).Round(time.Millisecond), held, g0, g1, rss0, hwm)
	if held > 64 {
		t.Errorf("the server holds %d idle anonymous Attest streams; want at most max_inflight_attestations (64)", held)
	}
	if g1-g0 > 2000 {
		t.Errorf("goroutines grew by %v under the flood; want a bound independent of the flood's size (≤ 2000)", g1-g0)
	}
	if hwm > rssBound(100) {
		t.Errorf("server peak RSS %.1f MiB under the flood; want < %.0f MiB", hwm, rssBound(100))
	}
	if t.Failed() {
		return
	}

	// The streams it holds end at the first-message deadline (10 s).
	testenv.WaitFor(t, 16*time.Second, "held streams ended at the first-message deadline", func() bool { return res.openStreams(ids) == 0 })
	for _, c := range res.conns {
		for id, e := range c.Ended() {
			if e.Reset == 0 && e.Code != codes.ResourceExhausted && e.Code != codes.DeadlineExceeded {
				t.Fatalf("stream %d ended with %v %q; want ResourceExhausted or DeadlineExceeded", id, e.Code, e.Msg)
			}
		}
	}
	res.close()
	testenv.WaitFor(t, 20*time.Second, "goroutines back near the baseline", func() bool {
		return metricValue(t, metrics, "go_goroutines") < g0+50
	})
}

// (b) Twenty 15 MiB first messages: refused on their length prefix, so the
// server never buffers them.
func TestNodeAPIHugeFirstMessagesAreNotBuffered(t *testing.T) {
	env := testenv.New(t)
	srv, _ := limitsServer(t, env)
	rss0 := procMiB(t, srv.PID(), "VmRSS")
	huge := &apiv1.AttestParams{Csr: bytes.Repeat([]byte{0x30}, 15<<20)}

	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			errs[i] = attestOnce(ctx, anonNode(t, srv.Address, source(1, i)), huge)
		}()
	}
	wg.Wait()
	hwm := procMiB(t, srv.PID(), "VmHWM")
	t.Logf("server RSS %.1f MiB before, peak %.1f MiB after 20 × 15 MiB first messages", rss0, hwm)
	for i, err := range errs {
		if status.Code(err) != codes.ResourceExhausted {
			t.Errorf("message %d: %v; want ResourceExhausted", i, err)
		}
	}
	if hwm-rss0 > rssBound(30) {
		t.Errorf("server peak RSS grew by %.1f MiB; want < %.0f MiB (the messages must be refused before they are read)", hwm-rss0, rssBound(30))
	}
}

// The documented worst case of memory held for unauthenticated clients:
// a hundred sources each trickling a first message just under the limit
// (500 KiB of a declared 510 KiB) and never finishing it. The server reads
// at most max_inflight_attestations of them, and ends them at the
// first-message deadline.
func TestNodeAPITrickledMessagesBounded(t *testing.T) {
	env := testenv.New(t)
	srv, metrics := limitsServer(t, env)
	rss0 := procMiB(t, srv.PID(), "VmRSS")
	res, ids := flood(t, srv.Address, 7, 100, 1, 1)
	var wg sync.WaitGroup
	var sent atomic.Int64
	for _, c := range res.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := ids[c][0]
			if c.SendPrefix(id, 510<<10, []byte{0x0a}) == nil && c.SendBody(id, 500<<10) == nil {
				sent.Add(1)
			}
		}()
	}
	wg.Wait()
	time.Sleep(500 * time.Millisecond)
	held := res.openStreams(ids)
	hwm := procMiB(t, srv.PID(), "VmHWM")
	t.Logf("%d of %d streams delivered 500 KiB and are held (%d open); server RSS %.1f MiB → peak %.1f MiB, goroutines %v",
		sent.Load(), len(res.conns), held, rss0, hwm, metricValue(t, metrics, "go_goroutines"))
	if held > 64 || sent.Load() > 64 {
		t.Errorf("%d streams held, %d fully sent; want at most 64 (max_inflight_attestations)", held, sent.Load())
	}
	if hwm > rssBound(100) {
		t.Errorf("server peak RSS %.1f MiB; want < %.0f MiB", hwm, rssBound(100))
	}
	testenv.WaitFor(t, 16*time.Second, "trickled messages ended at the first-message deadline", func() bool { return res.openStreams(ids) == 0 })
}

// (c) One source attesting in a tight loop is refused with
// ResourceExhausted past its burst; another source is not affected.
func TestNodeAPIAttestRateLimitPerSource(t *testing.T) {
	env := testenv.New(t)
	srv, _ := limitsServer(t, env)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bad := &apiv1.AttestParams{Csr: []byte("not a CSR")}

	noisy := anonNode(t, srv.Address, source(2, 0))
	var limited, served int
	var msg string
	for range 60 {
		err := attestOnce(ctx, noisy, bad)
		switch status.Code(err) {
		case codes.ResourceExhausted:
			limited++
			msg = status.Convert(err).Message()
		case codes.InvalidArgument:
			served++
		default:
			t.Fatalf("attest: %v; want InvalidArgument (bad CSR) or ResourceExhausted", err)
		}
	}
	t.Logf("one source, 60 attestations back to back: %d served, %d refused (%q)", served, limited, msg)
	if limited < 20 || served < 20 {
		t.Fatalf("%d served, %d refused; want the burst (20) served and the excess refused", served, limited)
	}
	if !strings.Contains(msg, "rate") {
		t.Errorf("refusal %q does not name the rate limit", msg)
	}
	if err := attestOnce(ctx, anonNode(t, srv.Address, source(2, 1)), bad); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("another source: %v; want InvalidArgument (served)", err)
	}
}

// The in-flight bound is configurable; attestations past it are refused at
// once with ResourceExhausted naming the bound.
func TestNodeAPIInflightAttestationsBound(t *testing.T) {
	env := testenv.New(t)
	srv, _ := limitsServer(t, env, testenv.WithServerHCL(`max_inflight_attestations = 4`))
	res, ids := flood(t, srv.Address, 3, 10, 1, 1)
	if len(res.conns) != 10 {
		t.Fatalf("%d of 10 connections accepted", len(res.conns))
	}
	var refused []string
	testenv.WaitFor(t, 5*time.Second, "6 of 10 idle attestations refused", func() bool {
		refused = refused[:0]
		for _, c := range res.conns {
			for _, e := range c.Ended() {
				refused = append(refused, fmt.Sprintf("%v %s", e.Code, e.Msg))
			}
		}
		return len(refused) >= 6
	})
	if held := res.openStreams(ids); held != 4 || len(refused) != 6 {
		t.Fatalf("held %d, refused %d (%v); want 4 and 6", held, len(refused), refused)
	}
	for _, r := range refused {
		if !strings.HasPrefix(r, "ResourceExhausted") || !strings.Contains(r, "in flight") {
			t.Fatalf("refusal %q; want ResourceExhausted naming the in-flight bound", r)
		}
	}
}

// Deadlines before authentication: an idle stream, a first message that
// never completes, a connection that opens no stream, and a TCP connection
// that never starts TLS all end within the configured bound.
func TestNodeAPIPreAuthDeadlines(t *testing.T) {
	env := testenv.New(t)
	srv, _ := limitsServer(t, env, testenv.WithServerHCL(`attestation_first_message_timeout = "1s"`))
	ctx := context.Background()

	idle, err := testenv.DialFlood(ctx, srv.Address, source(4, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	streams, err := idle.Open(attestMethod, 1)
	if err != nil {
		t.Fatal(err)
	}
	trickle, err := testenv.DialFlood(ctx, srv.Address, source(4, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer trickle.Close()
	tstreams, err := trickle.Open(attestMethod, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := trickle.SendPrefix(tstreams[0], 4000, []byte{0x0a}); err != nil {
		t.Fatal(err)
	}
	silent, err := testenv.DialFlood(ctx, srv.Address, source(4, 2))
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	tcp, err := net.Dial("tcp", srv.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	tcpClosed := make(chan struct{})
	go func() {
		_, _ = tcp.Read(make([]byte, 1))
		close(tcpClosed)
	}()

	start := time.Now()
	testenv.WaitFor(t, 4*time.Second, "idle stream ended", func() bool { _, ok := idle.Ended()[streams[0]]; return ok || idle.IsClosed() })
	testenv.WaitFor(t, 4*time.Second, "trickled first message ended", func() bool {
		_, ok := trickle.Ended()[tstreams[0]]
		return ok || trickle.IsClosed()
	})
	if e := idle.Ended()[streams[0]]; e.Code != codes.DeadlineExceeded {
		t.Errorf("idle stream ended with %+v; want DeadlineExceeded", e)
	}
	if !silent.WaitClosed(5 * time.Second) {
		t.Error("a connection without streams is still open after 5 s")
	}
	select {
	case <-tcpClosed:
	case <-time.After(5 * time.Second):
		t.Error("a TCP connection without a TLS handshake is still open after 5 s")
	}
	t.Logf("all four ended within %v", time.Since(start).Round(time.Millisecond))
}

// Only Attest is served without an agent SVID; an authenticated agent
// keeps the large message limit (a 1,000-CSR batch of ~0.9 MiB).
func TestNodeAPIAuthenticatedKeepsLargeMessages(t *testing.T) {
	env := testenv.New(t)
	srv, _ := limitsServer(t, env)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	reqs := make([]*apiv1.SVIDRequest, 1000)
	for i := range reqs {
		reqs[i] = &apiv1.SVIDRequest{EntryId: fmt.Sprintf("e%d", i), Csr: bytes.Repeat([]byte{1}, 900)}
	}

	_, err := anonNode(t, srv.Address, source(5, 0)).BatchSignX509SVID(ctx, &apiv1.BatchSignX509SVIDRequest{Requests: reqs})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("anonymous BatchSign: %v; want Unauthenticated", err)
	}

	c := nodeClient(t, srv)
	tok := srv.Token()
	res, key, err := attestWithToken(ctx, c, tok)
	if err != nil {
		t.Fatal(err)
	}
	agentID := "spiffe://example.org/agent/join_token/" + tok
	c.SetBundle(res.Bundle)
	c.SetSVID(&x509svid.SVID{ID: spiffeid.RequireFromString(agentID), Certificates: res.Certs, PrivateKey: key})
	results, err := c.BatchSign(ctx, reqs)
	if err != nil {
		t.Fatalf("agent BatchSign of ~0.9 MiB: %v", err)
	}
	if len(results) != 1000 || !strings.Contains(results[0].GetError(), "not authorised") {
		t.Fatalf("got %d results, first %q", len(results), results[0].GetError())
	}
}

// (d) An attested agent keeps working through the flood: a new entry
// reaches its workload, and its SVID renews (a new mTLS connection).
func TestNodeAPIAgentWorksDuringFlood(t *testing.T) {
	env := testenv.New(t)
	srv, _ := limitsServer(t, env, testenv.WithServerHCL(`agent_svid_ttl = "8s"`))
	ag := env.StartAgent(srv, srv.Token())
	srv.CreateEntry("spiffe://example.org/flood/base", ag.ID(), "-selector", uidSelector())
	w := watchSVIDs(t, ag.Addr())
	w.waitID("spiffe://example.org/flood/base", 20*time.Second)
	serial := agentSerial(t, srv)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var hugeRefused atomic.Int32
	wg.Add(1)
	go func() { // 15 MiB first messages, over and over
		defer wg.Done()
		huge := &apiv1.AttestParams{Csr: bytes.Repeat([]byte{0x30}, 15<<20)}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			node, closeNode := anonNodeConn(t, srv.Address, source(6, 200+i%20))
			if status.Code(attestOnce(ctx, node, huge)) == codes.ResourceExhausted {
				hugeRefused.Add(1)
			}
			closeNode()
			cancel()
		}
	}()
	res, _ := flood(t, srv.Address, 6, 100, 8, 10)
	t.Logf("flood: %d streams on %d connections, %d connections refused", res.streams, len(res.conns), res.refused)

	t0 := time.Now()
	srv.CreateEntry("spiffe://example.org/flood/new", ag.ID(), "-selector", uidSelector())
	w.waitID("spiffe://example.org/flood/new", 10*time.Second)
	t.Logf("entry → SVID during the flood: %v", time.Since(t0).Round(time.Millisecond))
	testenv.WaitFor(t, 20*time.Second, "agent SVID renewed during the flood", func() bool { return agentSerial(t, srv) != serial })
	close(stop)
	wg.Wait()
	if hugeRefused.Load() == 0 {
		t.Error("no 15 MiB message was refused with ResourceExhausted")
	}
	if err := ag.Healthy(); err != nil {
		t.Fatal(err)
	}
}

// A real TPM attestation whose answer carries the largest real measured
// boot log we have (a Windows shielded VM, 43 KB) passes the pre-auth
// message limit: the limit is sized for real evidence.
func TestTPMRealEventLogPassesPreAuthLimit(t *testing.T) {
	tpmtest.Require(t)
	ca := tpmtest.SharedCA(t, "e2e")
	inst := tpmtest.Shared(t, "e2e", ca).Start(t)
	env := testenv.New(t)

	var rec struct {
		Log struct {
			Raw string
		}
	}
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "attestors", "tpm", "testdata", "windows_gcp_shielded_vm.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(rec.Log.Raw)
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(env.Dir, "eventlog")
	if err := os.WriteFile(logPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	// PCR 16 alone is quoted: the log's firmware events (PCRs 0-9, another
	// machine's) are carried in full but not replayed against swtpm.
	srv := env.StartServer(testenv.WithHCL(`
node_attestor "tpm" {
  ek_ca_dir = "` + ca.WriteDir(t) + `"
  pcrs      = [16]
}`))
	env.StartAgent(srv, "", testenv.WithAgentTopHCL(`
node_attestor "tpm" {
  device    = "`+inst.Device()+`"
  event_log = "`+logPath+`"
}`))
	if !strings.Contains(srv.MustCLI("agent", "list"), "spiffe://example.org/agent/tpm/") {
		t.Fatal("TPM agent not attested")
	}
	t.Logf("attested with a %d-byte event log", len(raw))
}
