package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/test/testenv"
)

// These benchmarks run the real binaries; `make bench` runs them once
// each (-benchtime=1x for the set-up-heavy ones) and prints the figures.

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func entries(agentID string, n int, prefix string, uidBase int) []*apiv1.Entry {
	out := make([]*apiv1.Entry, n)
	for i := range out {
		out[i] = &apiv1.Entry{
			SpiffeId: fmt.Sprintf("spiffe://example.org/%s/%d", prefix, i), ParentId: agentID,
			Selectors: []*apiv1.Selector{{Type: "unix", Value: fmt.Sprintf("uid:%d", uidBase+i)}},
		}
	}
	return out
}

func createAll(b *testing.B, srv *testenv.Server, es []*apiv1.Entry) {
	b.Helper()
	resp, err := srv.Admin().CreateEntries(context.Background(), &apiv1.CreateEntriesRequest{Entries: es})
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range resp.GetResults() {
		if r.GetError() != "" {
			b.Fatal(r.GetError())
		}
	}
}

// BenchmarkFetchX509SVID: one stock go-spiffe client, sequential
// FetchX509SVID calls (each a new stream with caller attestation).
func BenchmarkFetchX509SVID(b *testing.B) {
	env := testenv.New(b)
	srv := env.StartServer()
	ag := env.StartAgent(srv, srv.Token())
	srv.CreateEntry("spiffe://example.org/bench", ag.ID(), "-selector", uidSelector())
	ctx := context.Background()
	client, err := workloadapi.New(ctx, workloadapi.WithAddr(ag.Addr()))
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	testenv.WaitFor(b, 10*time.Second, "first SVID", func() bool { _, err := client.FetchX509SVID(ctx); return err == nil })
	lat := make([]time.Duration, 0, b.N)
	testenv.ToggleProfile(ag.PID())
	b.ResetTimer()
	a0, _ := testenv.CPUTicks(ag.PID())
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(0, &ru0)
	start := time.Now()
	for range b.N {
		t0 := time.Now()
		if _, err := client.FetchX509SVID(ctx); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "fetches/s")
	a1, _ := testenv.CPUTicks(ag.PID())
	b.StopTimer()
	testenv.ToggleProfile(ag.PID())
	syscall.Getrusage(0, &ru1)
	b.ReportMetric(float64(a1-a0)*10000/float64(b.N), "agent-cpu-us/op")
	b.ReportMetric(float64((ru1.Utime.Nano()+ru1.Stime.Nano())-(ru0.Utime.Nano()+ru0.Stime.Nano()))/1000/float64(b.N), "client-cpu-us/op")
	b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
}

// BenchmarkFetchX509SVIDConcurrent: one stock go-spiffe client (one
// workload process, one connection) fetching from 4 goroutines at once:
// the agent's throughput when the caller does not wait for each answer
// before asking again.
func BenchmarkFetchX509SVIDConcurrent(b *testing.B) {
	env := testenv.New(b)
	srv := env.StartServer()
	ag := env.StartAgent(srv, srv.Token())
	srv.CreateEntry("spiffe://example.org/bench", ag.ID(), "-selector", uidSelector())
	ctx := context.Background()
	client, err := workloadapi.New(ctx, workloadapi.WithAddr(ag.Addr()))
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	testenv.WaitFor(b, 10*time.Second, "first SVID", func() bool { _, err := client.FetchX509SVID(ctx); return err == nil })
	b.SetParallelism(2) // 2 × GOMAXPROCS goroutines
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := client.FetchX509SVID(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "fetches/s")
}

// BenchmarkEntryToWorkload10k: with 10,000 entries present, the time from
// creating an entry to the workload's Workload API stream delivering it.
func BenchmarkEntryToWorkload10k(b *testing.B) {
	env := testenv.New(b)
	srv := env.StartServer()
	ag := env.StartAgent(srv, srv.Token())
	createAll(b, srv, entries(ag.ID(), 10000, "filler", 100000))
	srv.CreateEntry("spiffe://example.org/watched/base", ag.ID(), "-selector", uidSelector())
	admin := srv.Admin()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	waitID := watchSVIDs(b, ag.Addr()).waitID
	waitID("spiffe://example.org/watched/base", 60*time.Second)
	testenv.WaitIdle(b, ag.PID(), 120*time.Second) // all 10,000 fillers minted
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		id := fmt.Sprintf("spiffe://example.org/watched/%d", i)
		t0 := time.Now()
		resp, err := admin.CreateEntries(ctx, &apiv1.CreateEntriesRequest{Entries: []*apiv1.Entry{{
			SpiffeId: id, ParentId: ag.ID(), Selectors: []*apiv1.Selector{{Type: "unix", Value: uidSelector()[len("unix:"):]}},
		}}})
		if err != nil || resp.GetResults()[0].GetError() != "" {
			b.Fatalf("create: %v %v", err, resp)
		}
		waitID(id, 10*time.Second)
		lat = append(lat, time.Since(t0))
	}
	b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
}

// BenchmarkBulkCreate10kCLI: `hallmark-server entry create -data` with
// 10,000 entries, the whole CLI invocation.
func BenchmarkBulkCreate10kCLI(b *testing.B) {
	env := testenv.New(b)
	srv := env.StartServer()
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		path := filepath.Join(env.Dir, fmt.Sprintf("entries-%d.json", i))
		es := entries("spiffe://example.org/agent/x", 10000, fmt.Sprintf("bulk%d", i), 0)
		var doc struct {
			Entries []map[string]any `json:"entries"`
		}
		for _, e := range es {
			doc.Entries = append(doc.Entries, map[string]any{
				"spiffe_id": e.SpiffeId, "parent_id": e.ParentId,
				"selectors": []map[string]string{{"type": "unix", "value": e.Selectors[0].Value}},
			})
		}
		data, _ := json.Marshal(doc)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		out := srv.MustCLI("entry", "create", "-data", path)
		b.StopTimer()
		if want := "Created 10000 entries, 0 failed"; !contains(out, want) {
			b.Fatalf("output %q, want %q", out, want)
		}
		b.StartTimer()
	}
}

func contains(s, sub string) bool { return len(s) >= len(sub) && (s == sub || indexOf(s, sub) >= 0) }

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// BenchmarkIdle: idle CPU of server and agent with 10,000 entries (all
// minted at the agent), and agent RSS with 1,000 SVIDs.
func BenchmarkIdle(b *testing.B) {
	for range b.N {
		env := testenv.New(b)
		srv := env.StartServer()
		ag := env.StartAgent(srv, srv.Token())
		createAll(b, srv, entries(ag.ID(), 1000, "rss", 200000))
		srv.CreateEntry("spiffe://example.org/rss/marker", ag.ID(), "-selector", uidSelector())
		waitForSVIDb(b, ag.Addr(), "spiffe://example.org/rss/marker")
		testenv.WaitIdle(b, ag.PID(), 120*time.Second)
		rss, err := testenv.RSSBytes(ag.PID())
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(rss)/(1<<20), "agent-rss-1k-MiB")

		createAll(b, srv, entries(ag.ID(), 9000, "idle", 300000))
		srv.CreateEntry("spiffe://example.org/idle/marker", ag.ID(), "-selector", uidSelector())
		waitForSVIDb(b, ag.Addr(), "spiffe://example.org/idle/marker")
		testenv.WaitIdle(b, ag.PID(), 120*time.Second)
		testenv.WaitIdle(b, srv.PID(), 120*time.Second)
		s0, _ := testenv.CPUTicks(srv.PID())
		a0, _ := testenv.CPUTicks(ag.PID())
		const window = 10 * time.Second
		time.Sleep(window)
		s1, _ := testenv.CPUTicks(srv.PID())
		a1, _ := testenv.CPUTicks(ag.PID())
		pct := func(d int64) float64 { return float64(d) / 100 / window.Seconds() * 100 }
		b.ReportMetric(pct(s1-s0), "server-idle-cpu-%")
		b.ReportMetric(pct(a1-a0), "agent-idle-cpu-%")
		rss10k, _ := testenv.RSSBytes(ag.PID())
		srss, _ := testenv.RSSBytes(srv.PID())
		b.ReportMetric(float64(rss10k)/(1<<20), "agent-rss-10k-MiB")
		b.ReportMetric(float64(srss)/(1<<20), "server-rss-10k-MiB")
	}
}

func waitForSVIDb(b *testing.B, addr, want string) {
	b.Helper()
	testenv.WaitFor(b, 120*time.Second, "SVID "+want, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c, err := workloadapi.FetchX509Context(ctx, workloadapi.WithAddr(addr))
		if err != nil {
			return false
		}
		for _, s := range c.SVIDs {
			if s.ID.String() == want {
				return true
			}
		}
		return false
	})
}
