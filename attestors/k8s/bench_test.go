package k8s_test

import (
	"context"
	"sync"
	"testing"

	"github.com/hallmarkid/hallmark/attestors/k8s"
	"github.com/hallmarkid/hallmark/attestors/k8s/k8stest"
)

// BenchmarkAttestWarmCache measures one attestation of a pod workload when
// the kubelet's pod list is cached: read and parse the cgroup file, look
// the container up, copy its selectors.
func BenchmarkAttestWarmCache(b *testing.B) {
	k := k8stest.StartKubelet(b, fixturePods(b, "pod_list.json")...)
	a := newAttestor(b, k, procDir(b, fixture(b, "cgroups_pid_in_pod.txt"), ""), func(c *k8s.Config) {
		c.PodListCacheTTL = "1m"
	})
	ctx := context.Background()
	if _, err := a.Attest(ctx, fakePID); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Attest(ctx, fakePID); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(k.Requests()-1)/float64(b.N), "kubelet-req/op")
}

// BenchmarkAttest100ConcurrentNoCache runs 100 callers at once with the
// cache off: every attestation needs a kubelet answer that started after
// it did, yet requests are shared and never more than one is in flight.
func BenchmarkAttest100ConcurrentNoCache(b *testing.B) {
	k := k8stest.StartKubelet(b, fixturePods(b, "pod_list.json")...)
	a := newAttestor(b, k, procDir(b, fixture(b, "cgroups_pid_in_pod.txt"), ""), func(c *k8s.Config) {
		c.PodListCacheTTL = "0s"
	})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		var wg sync.WaitGroup
		for range 100 {
			wg.Go(func() {
				if _, err := a.Attest(ctx, fakePID); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
	}
	b.ReportMetric(float64(k.Requests())/float64(100*b.N), "kubelet-req/attestation")
	b.ReportMetric(float64(k.MaxInFlight()), "max-in-flight")
}
