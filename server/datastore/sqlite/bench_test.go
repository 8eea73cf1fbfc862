package sqlite_test

import (
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/datastore/sqlite"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// entries10k returns 10,000 distinct entries shaped like real ones: three
// selectors, a DNS name, a federated trust domain.
func entries10k() []registration.Entry {
	es := make([]registration.Entry, 10_000)
	for i := range es {
		es[i] = registration.Entry{
			SPIFFEID: spiffeid.RequireFromPath(td, fmt.Sprintf("/ns/ns%d/sa/workload-%d", i%50, i)),
			ParentID: spiffeid.RequireFromPath(td, fmt.Sprintf("/agent/k8s_psat/cluster/node-%d", i%100)),
			Selectors: []registration.Selector{
				{Type: "k8s", Value: fmt.Sprintf("ns:ns%d", i%50)},
				{Type: "k8s", Value: fmt.Sprintf("sa:workload-%d", i)},
				{Type: "k8s", Value: "container-name:app"},
			},
			X509SVIDTTL:   time.Hour,
			DNSNames:      []string{fmt.Sprintf("workload-%d.ns%d.svc", i, i%50)},
			FederatesWith: []spiffeid.TrustDomain{spiffeid.RequireTrustDomainFromString("partner.example")},
		}
	}
	return es
}

// BenchmarkCreateEntries10k measures one CreateEntries call of 10,000
// entries into a fresh database.
func BenchmarkCreateEntries10k(b *testing.B) {
	es := entries10k()
	dir := b.TempDir()
	var cpu time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s, err := sqlite.Open(b.Context(), filepath.Join(dir, fmt.Sprintf("bench%d.db", i)), nil)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		before := cpuTime()
		res, err := s.CreateEntries(b.Context(), es)
		cpu += cpuTime() - before
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range res {
			if r.Err != nil {
				b.Fatal(r.Err)
			}
		}
		s.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(len(es)*b.N)/b.Elapsed().Seconds(), "entries/s")
	// CPU time is the steadier figure on a shared machine.
	b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
}

// cpuTime returns the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkListEntries10k measures reading back 10,000 entries.
func BenchmarkListEntries10k(b *testing.B) {
	s, err := sqlite.Open(b.Context(), filepath.Join(b.TempDir(), "bench.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CreateEntries(b.Context(), entries10k()); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		list, _, err := s.ListEntries(b.Context())
		if err != nil || len(list) != 10_000 {
			b.Fatal(len(list), err)
		}
	}
}
