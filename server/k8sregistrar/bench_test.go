package k8sregistrar_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/server/datastore/sqlite"
	"github.com/hallmarkid/hallmark/server/k8sregistrar"
)

// BenchmarkPodToEntry: a pod created (bound to its node) in the real API
// server → its entry committed to the datastore; reports p50/p99.
// Run: go test -run XXX -bench PodToEntry -benchtime 300x ./server/k8sregistrar/
func BenchmarkPodToEntry(b *testing.B) {
	e := newEnv(b)
	// The framework runs a benchmark more than once, and without a
	// namespace controller deleted namespaces never go: fresh names.
	run := benchRun.Add(1)
	cluster, class := fmt.Sprintf("bench-latency-%d", run), fmt.Sprintf("bench-latency-%d", run)
	ns, node, csid := fmt.Sprintf("bl-apps-%d", run), fmt.Sprintf("bl-node-%d", run), fmt.Sprintf("bl-mesh-%d", run)
	e.namespace(ns, nil)
	e.serviceAccount(ns, "app")
	e.node(node)
	e.apply("csid", fmt.Sprintf(mesh, csid, class))
	r := e.start(k8sregistrar.Config{Cluster: cluster, ClassName: class})
	waitFor(b, 10*time.Second, "leading", r.Leading)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		p := e.pod(ns, fmt.Sprintf("p%d", i), "app", node, nil)
		id := k8sregistrar.PodEntryID(cluster, csid, string(p.UID))
		var at time.Time
		waitFor(b, 10*time.Second, "the entry", func() bool {
			var ok bool
			at, ok = e.store.createdAt(id)
			return ok
		})
		lat = append(lat, at.Sub(t0))
	}
	b.StopTimer()
	reportPercentiles(b, lat)
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	p := func(q float64) float64 {
		return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(p(0.5), "p50-ms")
	b.ReportMetric(p(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}

const coldPods = 1000

var benchRun atomic.Int64

// BenchmarkColdStart1000: 1,000 running pods, a registrar with an empty
// datastore → all 1,000 entries committed (reported as cold-s); then a
// restarted registrar over the same datastore converges making
// restart-writes writes (want 0).
// Run: go test -run XXX -bench ColdStart -benchtime 1x ./server/k8sregistrar/
func BenchmarkColdStart1000(b *testing.B) {
	e := newEnv(b)
	run := benchRun.Add(1)
	class, ns, node := fmt.Sprintf("bench-cold-%d", run), fmt.Sprintf("bc-apps-%d", run), fmt.Sprintf("bc-node-%d", run)
	{
		e.namespace(ns, nil)
		e.serviceAccount(ns, "app")
		e.node(node)
		e.apply("csid", fmt.Sprintf(mesh, class, class))
		var wg sync.WaitGroup
		sem := make(chan struct{}, 16)
		for i := range coldPods {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				e.pod(ns, fmt.Sprintf("p%d", i), "app", node, map[string]string{"i": fmt.Sprint(i)})
			}()
		}
		wg.Wait()
	}
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), fmt.Sprintf("cold%d.sqlite3", i)), nil)
		if err != nil {
			b.Fatal(err)
		}
		e.store = &countingStore{Store: st}
		cluster := fmt.Sprintf("bench-cold-%d-%d", run, i)
		prefix := k8sregistrar.OwnedPrefix(cluster)
		cfg := k8sregistrar.Config{Cluster: cluster, ClassName: class}
		b.StartTimer()
		t0 := time.Now()
		r := e.start(cfg)
		waitFor(b, 60*time.Second, "1,000 entries", func() bool { return len(e.entries(prefix)) == coldPods })
		b.ReportMetric(time.Since(t0).Seconds(), "cold-s")
		b.StopTimer()
		r.stop()
		before := e.store.writes.Load()
		r2 := e.start(cfg)
		waitFor(b, 10*time.Second, "leading", r2.Leading)
		time.Sleep(2 * time.Second) // a full pass over 1,000 pods and the status write
		b.ReportMetric(float64(e.store.writes.Load()-before), "restart-writes")
		r2.stop()
		st.Close()
		b.StartTimer()
	}
}
