package sds_test

import (
	"context"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"

	"github.com/hallmarkid/hallmark/agent/cache"
	"github.com/hallmarkid/hallmark/sds"
)

func reportPercentiles(b *testing.B, d []time.Duration, prefix string) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Microseconds()), prefix+"p50-µs")
	b.ReportMetric(float64(d[len(d)*99/100].Microseconds()), prefix+"p99-µs")
}

// BenchmarkFirstResponse measures a new stream's first response: connect
// to the stream, caller attestation, resolution and the Secret protos.
func BenchmarkFirstResponse(b *testing.B) {
	e := newEnv(b)
	e.addEntries(mkEntry("e1", "/w1", 1, uidSelector(os.Getuid())))
	c := e.client()
	req := &discoveryv3.DiscoveryRequest{TypeUrl: sds.SecretTypeURL, Node: envoyNode(1, 30), ResourceNames: []string{"default"}}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		ctx, cancel := context.WithCancel(headerCtx(context.Background()))
		s, err := c.StreamSecrets(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Send(req); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
		cancel()
	}
	b.StopTimer()
	reportPercentiles(b, lat, "")
}

// pushBench measures the time from a cache change (an SVID rotation) to its
// arrival at each of n streams.
func pushBench(b *testing.B, n int) {
	e := newEnv(b)
	w := mkEntry("e1", "/w1", 1, uidSelector(os.Getuid()))
	e.addEntries(w)
	conns := make([]*grpc.ClientConn, min(n, 10))
	for i := range conns {
		conns[i] = e.dial()
	}
	streams := e.openMany(n, conns)
	svids := []*cache.SVID{e.mint(w, time.Hour), e.mint(w, time.Hour)}
	lat := make([]time.Duration, 0, b.N*n)
	var mu sync.Mutex
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		var wg sync.WaitGroup
		for _, s := range streams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				select {
				case <-s.resps:
				case err := <-s.errc:
					panic(err)
				}
				d := time.Since(start)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}()
		}
		e.cache.SetSVIDs(map[string]*cache.SVID{w.ID: svids[i%2]})
		wg.Wait()
	}
	b.StopTimer()
	reportPercentiles(b, lat, "")
}

func BenchmarkPushLatency(b *testing.B)            { pushBench(b, 1) }
func BenchmarkPushLatency1000Streams(b *testing.B) { pushBench(b, 1000) }

// BenchmarkMemoryPerStream reports the heap held per open stream, client
// and server side together, over 500 streams.
func BenchmarkMemoryPerStream(b *testing.B) {
	const n = 500
	e := newEnv(b)
	e.addEntries(mkEntry("e1", "/w1", 1, uidSelector(os.Getuid())))
	conns := []*grpc.ClientConn{e.dial(), e.dial()}
	var total int64
	b.ResetTimer()
	for range b.N {
		before := heapInUse()
		streams := e.openMany(n, conns)
		total += (int64(heapInUse()) - int64(before)) / n
		for _, s := range streams {
			s.cancel()
		}
		for e.h.Streams() > 0 {
			time.Sleep(time.Millisecond)
		}
	}
	b.ReportMetric(float64(total)/float64(b.N), "B/stream")
}
