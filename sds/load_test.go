package sds_test

import (
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
)

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// openMany opens n "default" streams spread over conns connections and
// waits for each one's first response.
func (e *env) openMany(n int, conns []*grpc.ClientConn) []*stream {
	e.t.Helper()
	streams := make([]*stream, n)
	for i := range streams {
		streams[i] = openStreamOn(e.t, clientOf(conns[i%len(conns)]), true)
		streams[i].send(&discoveryv3.DiscoveryRequest{Node: envoyNode(1, 30), ResourceNames: []string{"default"}})
	}
	for _, s := range streams {
		r := s.recv()
		s.send(&discoveryv3.DiscoveryRequest{VersionInfo: r.VersionInfo, ResponseNonce: r.Nonce, ResourceNames: []string{"default"}})
	}
	return streams
}

func TestThousandStreamsThroughRotations(t *testing.T) {
	const n, rotations = 1000, 3
	e := newEnv(t)
	w := mkEntry("e1", "/w1", 1, uidSelector(os.Getuid()))
	e.addEntries(w)
	conns := make([]*grpc.ClientConn, 10)
	for i := range conns {
		conns[i] = e.dial()
	}
	// Warm up every connection so their goroutines count as the baseline.
	for _, cc := range conns {
		if _, err := clientOf(cc).FetchSecrets(ctxT(t), &discoveryv3.DiscoveryRequest{ResourceNames: []string{"default"}}); err != nil {
			t.Fatal(err)
		}
	}
	baseG := runtime.NumGoroutine()
	baseHeap := heapInUse()

	streams := e.openMany(n, conns)
	if got := e.h.Streams(); got != n {
		t.Fatalf("handler counts %d streams, want %d", got, n)
	}
	openHeap := heapInUse()
	perStream := (int64(openHeap) - int64(baseHeap)) / n
	t.Logf("%d open streams: %d goroutines, heap in use +%d KiB (%d B per stream, client and server side)",
		n, runtime.NumGoroutine()-baseG, (int64(openHeap)-int64(baseHeap))>>10, perStream)
	if perStream > 256<<10 {
		t.Errorf("%d B of heap per stream, want < 256 KiB", perStream)
	}

	for i := range rotations {
		svid := e.rotate(w)
		want := leafOf(t, svid).SerialNumber.String()
		var wg sync.WaitGroup
		errs := make(chan string, n)
		for _, s := range streams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				select {
				case r := <-s.resps:
					if got := serial(nopTB{}, r, "default"); got != want {
						errs <- got
					}
				case err := <-s.errc:
					errs <- err.Error()
				case <-time.After(20 * time.Second):
					errs <- "timeout"
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("rotation %d: a stream got %s, want serial %s", i, err, want)
		}
	}
	// Bounded: the heap after rotations is what it was with the streams open.
	if after := heapInUse(); after > openHeap+openHeap/2+(8<<20) {
		t.Errorf("heap in use grew from %d to %d KiB through %d rotations", openHeap>>10, after>>10, rotations)
	}

	for _, s := range streams {
		s.cancel()
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && (runtime.NumGoroutine() > baseG || e.h.Streams() > 0) {
		time.Sleep(20 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > baseG || e.h.Streams() != 0 {
		t.Fatalf("after closing: %d goroutines (baseline %d), %d streams open", g, baseG, e.h.Streams())
	}
}
