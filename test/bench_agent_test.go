package test

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/test/testenv"
)

// The agent at its limit (issue #15, part 2): `make bench` runs these;
// docs/performance.md ("The agent at its limit") has the figures.

// BenchmarkBatch1000ToWatcher: a stock go-spiffe watcher
// (WatchX509Context) is connected and holds one SVID; 1,000 entries for it
// are created in one admin CreateEntries call. Timed: from the call to the
// first update the watcher receives that holds all 1,000 new SVIDs (the
// agent generates 1,000 keys and CSRs, the server signs them, the agent
// pushes, the client parses). A fresh server and agent per iteration.
func BenchmarkBatch1000ToWatcher(b *testing.B) {
	const n = 1000
	var total time.Duration
	var updates, agentTicks, serverTicks, clientCPU int64
	for i := range b.N {
		b.StopTimer()
		env := testenv.New(b)
		srv := env.StartServer()
		ag := env.StartAgent(srv, srv.Token())
		srv.CreateEntry("spiffe://example.org/batch/base", ag.ID(), "-selector", uidSelector())
		ctx, cancel := context.WithCancel(context.Background())
		client, err := workloadapi.New(ctx, workloadapi.WithAddr(ag.Addr()))
		if err != nil {
			b.Fatal(err)
		}
		got := make(chan int, 1024) // SVIDs of this batch in each update
		go func() {
			_ = client.WatchX509Context(ctx, watcher(func(c *workloadapi.X509Context) {
				k := 0
				for _, s := range c.SVIDs {
					if strings.HasPrefix(s.ID.Path(), "/batch/e") {
						k++
					}
				}
				select {
				case got <- k:
				case <-ctx.Done():
				}
			}))
		}()
		waitCount(b, got, 0, 20*time.Second) // the base SVID is held
		testenv.WaitIdle(b, ag.PID(), 20*time.Second)
		es := entries(ag.ID(), n, "batch/e", 0)
		for _, e := range es {
			e.Selectors[0].Value = uidSelector()[len("unix:"):]
		}
		var ru0, ru1 syscall.Rusage
		syscall.Getrusage(0, &ru0)
		a0, _ := testenv.CPUTicks(ag.PID())
		s0, _ := testenv.CPUTicks(srv.PID())
		testenv.ToggleProfile(ag.PID(), srv.PID())
		b.StartTimer()
		t0 := time.Now()
		resp, err := srv.Admin().CreateEntries(ctx, &apiv1.CreateEntriesRequest{Entries: es})
		if err != nil {
			b.Fatal(err)
		}
		updates += waitCount(b, got, n, 30*time.Second)
		d := time.Since(t0)
		b.StopTimer()
		testenv.ToggleProfile(ag.PID(), srv.PID())
		syscall.Getrusage(0, &ru1)
		clientCPU += (ru1.Utime.Nano() + ru1.Stime.Nano()) - (ru0.Utime.Nano() + ru0.Stime.Nano())
		a1, _ := testenv.CPUTicks(ag.PID())
		s1, _ := testenv.CPUTicks(srv.PID())
		agentTicks += a1 - a0
		serverTicks += s1 - s0
		for _, r := range resp.GetResults() {
			if r.GetError() != "" {
				b.Fatal(r.GetError())
			}
		}
		total += d
		b.Logf("iteration %d: %d SVIDs at the watcher after %s", i, n, d)
		cancel()
		client.Close()
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/batch")
	b.ReportMetric(float64(updates)/float64(b.N), "updates/batch")
	b.ReportMetric(float64(agentTicks)/100/float64(b.N), "agent-cpu-s/batch")
	b.ReportMetric(float64(serverTicks)/100/float64(b.N), "server-cpu-s/batch")
	b.ReportMetric(float64(clientCPU)/1e9/float64(b.N), "client-cpu-s/batch")
}

// waitCount reads counts from got until one reaches want and returns how
// many updates it read.
func waitCount(b *testing.B, got <-chan int, want int, d time.Duration) int64 {
	b.Helper()
	timeout := time.After(d)
	var k int64
	for {
		select {
		case c := <-got:
			k++
			if c >= want {
				return k
			}
		case <-timeout:
			b.Fatalf("no update with %d SVIDs within %s", want, d)
		}
	}
}
