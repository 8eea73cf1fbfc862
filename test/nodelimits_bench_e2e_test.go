package test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/test/testenv"
)

// BenchmarkNodeAPIFlood: an attested agent's entry → SVID latency, quiet
// and while 10,000 idle anonymous Attest streams (100 sources × 10
// connections × 10 streams, raw HTTP/2) and 20 concurrent senders of
// 15 MiB first messages are thrown at the server, in one run; with the
// server's peak RSS and goroutines and the load average. Run with
// -benchtime=1x.
func BenchmarkNodeAPIFlood(b *testing.B) {
	for range b.N {
		env := testenv.New(b)
		srv, metrics := limitsServer(b, env)
		ag := env.StartAgent(srv, srv.Token())
		srv.CreateEntry("spiffe://example.org/bench/base", ag.ID(), "-selector", uidSelector())
		w := watchSVIDs(b, ag.Addr())
		w.waitID("spiffe://example.org/bench/base", 30*time.Second)
		admin := srv.Admin()
		n := 0
		sample := func(k int) []time.Duration {
			var lat []time.Duration
			for range k {
				id := fmt.Sprintf("spiffe://example.org/bench/%d", n)
				n++
				t0 := time.Now()
				resp, err := admin.CreateEntries(context.Background(), &apiv1.CreateEntriesRequest{Entries: []*apiv1.Entry{{
					SpiffeId: id, ParentId: ag.ID(), Selectors: []*apiv1.Selector{{Type: "unix", Value: uidSelector()[len("unix:"):]}},
				}}})
				if err != nil || resp.GetResults()[0].GetError() != "" {
					b.Fatalf("create: %v %v", err, resp)
				}
				w.waitID(id, 30*time.Second)
				lat = append(lat, time.Since(t0))
			}
			return lat
		}
		sample(5) // warm up
		testenv.WaitIdle(b, srv.PID(), 30*time.Second)
		rss0 := procMiB(b, srv.PID(), "VmRSS")
		g0 := metricValue(b, metrics, "go_goroutines")
		quiet := sample(15)

		// The flood, thrown at once: 20 first messages of 15 MiB from 20
		// sources and the wave of idle streams; sampled while the server
		// holds what it admitted of them.
		var wg sync.WaitGroup
		var hugeRefused atomic.Int64
		huge := &apiv1.AttestParams{Csr: bytes.Repeat([]byte{0x30}, 15<<20)}
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				node, closeNode := anonNodeConn(b, srv.Address, source(20, i))
				defer closeNode()
				if status.Code(attestOnce(ctx, node, huge)) == codes.ResourceExhausted {
					hugeRefused.Add(1)
				}
			}()
		}
		stop := make(chan struct{})
		var gMax atomic.Int64
		sampled := make(chan struct{})
		go func() { // goroutines, sampled
			defer close(sampled)
			for {
				gMax.Store(max(gMax.Load(), int64(metricValue(b, metrics, "go_goroutines"))))
				select {
				case <-stop:
					return
				case <-time.After(250 * time.Millisecond):
				}
			}
		}()
		t0 := time.Now()
		res, ids := flood(b, srv.Address, 21, 100, 10, 10)
		thrown := time.Since(t0)
		wg.Wait()
		flooded := sample(15)
		held := res.openStreams(ids) // settled: refusals have reached the client
		rssFlood := procMiB(b, srv.PID(), "VmRSS")
		close(stop)
		<-sampled
		hwm := procMiB(b, srv.PID(), "VmHWM")
		load, _ := os.ReadFile("/proc/loadavg")
		res.close()
		testenv.WaitIdle(b, srv.PID(), 60*time.Second)
		quiet = append(quiet, sample(15)...) // and quiet again, after

		q, f := percentile(quiet, 0.5), percentile(flooded, 0.5)
		b.Logf("quiet (before and after) entry→SVID p50 %v max %v; flooded p50 %v max %v (ratio %.2f)", q, percentile(quiet, 1), f, percentile(flooded, 1), float64(f)/float64(q))
		b.Logf("flood: 10,000 streams on 1,000 connections attempted, %d connections refused at connect, %d streams sent on %d, thrown in %v; "+
			"server held %d streams; 20 messages of 15 MiB: %d refused with ResourceExhausted", res.refused, res.streams, len(res.conns),
			thrown.Round(time.Millisecond), held, hugeRefused.Load())
		b.Logf("server RSS %.1f MiB quiet, %.1f MiB flooded, peak %.1f MiB; goroutines %v quiet, peak %d; load average %s",
			rss0, rssFlood, hwm, g0, gMax.Load(), strings.TrimSpace(string(load)))
		b.ReportMetric(float64(q.Microseconds())/1000, "quiet-p50-ms")
		b.ReportMetric(float64(f.Microseconds())/1000, "flooded-p50-ms")
		b.ReportMetric(float64(f)/float64(q), "flooded/quiet")
		b.ReportMetric(hwm, "peak-rss-MiB")
		b.ReportMetric(float64(gMax.Load()), "peak-goroutines")
		b.ReportMetric(float64(held), "held-streams")
	}
}
