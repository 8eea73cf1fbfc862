package test

import (
	"context"
	"fmt"
	"testing"
	"time"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/test/testenv"
)

// BenchmarkPostgres100k carries issue 7's figures: with 100,000 entries in
// PostgreSQL and two servers on it, the idle CPU of both servers, the time
// from starting a server to ready (it loads every entry before it
// answers), and the time from creating an entry on server A to the SVID at
// a workload of an agent connected to server B (b.N samples).
func BenchmarkPostgres100k(b *testing.B) {
	ds := postgresDatastore(b)
	env := testenv.New(b)
	a := env.StartServer(testenv.WithHCL(ds))
	for i := range 10 {
		// Parented to an agent that never connects: they load and sit in
		// every server's entry cache but mint nothing.
		createAll(b, a, entries("spiffe://example.org/agent/elsewhere", 10000, fmt.Sprintf("pg%d", i), 400000))
	}
	srvB := env.StartServer(testenv.WithHCL(ds), testenv.WithCAFrom(a))
	agB := env.StartAgent(srvB, srvB.Token())

	testenv.WaitIdle(b, a.PID(), 120*time.Second)
	testenv.WaitIdle(b, srvB.PID(), 120*time.Second)
	a0, _ := testenv.CPUTicks(a.PID())
	b0, _ := testenv.CPUTicks(srvB.PID())
	const window = 10 * time.Second
	time.Sleep(window)
	a1, _ := testenv.CPUTicks(a.PID())
	b1, _ := testenv.CPUTicks(srvB.PID())
	pct := func(d int64) float64 { return float64(d) / 100 / window.Seconds() * 100 }
	// Reported at the end: ResetTimer drops metrics reported before it.
	metrics := map[string]float64{"serverA-idle-cpu-%": pct(a1 - a0), "serverB-idle-cpu-%": pct(b1 - b0)}
	if rss, err := testenv.RSSBytes(a.PID()); err == nil {
		metrics["server-rss-100k-MiB"] = float64(rss) / (1 << 20)
	}

	// Restart → ready: Start returns once the healthcheck CLI passes (it
	// polls every 20 ms, so this is an upper bound).
	a.Stop()
	t0 := time.Now()
	a.Start()
	metrics["restart-to-ready-ms"] = float64(time.Since(t0).Milliseconds())

	// Entry on A → SVID at B's agent, through PostgreSQL's change feed.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	waitID := watchSVIDs(b, agB.Addr()).waitID
	adminA := a.Admin()
	create := func(id string) {
		resp, err := adminA.CreateEntries(ctx, &apiv1.CreateEntriesRequest{Entries: []*apiv1.Entry{{
			SpiffeId: id, ParentId: agB.ID(), Selectors: []*apiv1.Selector{{Type: "unix", Value: uidSelector()[len("unix:"):]}},
		}}})
		if err != nil || resp.GetResults()[0].GetError() != "" {
			b.Fatalf("create: %v %v", err, resp)
		}
	}
	create("spiffe://example.org/pg/base")
	waitID("spiffe://example.org/pg/base", 60*time.Second)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		id := fmt.Sprintf("spiffe://example.org/pg/watched/%d", i)
		t0 := time.Now()
		create(id)
		waitID(id, 10*time.Second)
		lat = append(lat, time.Since(t0))
	}
	b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, "AtoB-p50-ms")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "AtoB-p99-ms")
	for k, v := range metrics {
		b.ReportMetric(v, k)
	}
}
