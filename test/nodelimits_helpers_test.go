package test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/test/testenv"
)

// Helpers of the Node API limits tests (nodelimits_e2e_test.go).

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
