package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/internal/pgtest"
	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/datastore/postgres"
)

// benchEntries returns n distinct entries shaped like real ones: three
// selectors, a DNS name, a federated trust domain. tag keeps batches
// distinct.
func benchEntries(n int, tag string) []registration.Entry {
	es := make([]registration.Entry, n)
	for i := range es {
		es[i] = registration.Entry{
			SPIFFEID: spiffeid.RequireFromPath(td, fmt.Sprintf("/ns/ns%d/sa/workload-%s%d", i%50, tag, i)),
			ParentID: spiffeid.RequireFromPath(td, fmt.Sprintf("/agent/k8s_psat/cluster/node-%d", i%100)),
			Selectors: []registration.Selector{
				{Type: "k8s", Value: fmt.Sprintf("ns:ns%d", i%50)},
				{Type: "k8s", Value: fmt.Sprintf("sa:workload-%s%d", tag, i)},
				{Type: "k8s", Value: "container-name:app"},
			},
			X509SVIDTTL:   time.Hour,
			DNSNames:      []string{fmt.Sprintf("workload-%d.ns%d.svc", i, i%50)},
			FederatesWith: []spiffeid.TrustDomain{spiffeid.RequireTrustDomainFromString("partner.example")},
		}
	}
	return es
}

// cpuTime returns the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCreateEntries10k measures one CreateEntries call of 10,000
// entries into a fresh database.
func BenchmarkCreateEntries10k(b *testing.B) {
	es := benchEntries(10_000, "")
	var cpu time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s, err := postgres.Open(context.Background(), pgtest.Start(b), nil)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		before := cpuTime()
		res, err := s.CreateEntries(context.Background(), es)
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
	// Client-side CPU (the database server's is not included).
	b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "client-cpu-ms/op")
}

// store100k returns a connection string to a database holding 100,000
// entries.
func store100k(b *testing.B) string {
	b.Helper()
	conn := pgtest.Start(b)
	s, err := postgres.Open(context.Background(), conn, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for i := range 10 {
		if _, err := s.CreateEntries(context.Background(), benchEntries(10_000, fmt.Sprintf("b%d-", i))); err != nil {
			b.Fatal(err)
		}
	}
	return conn
}

// BenchmarkListEntries100k measures reading back 100,000 entries, the
// bulk of a server's start-up.
func BenchmarkListEntries100k(b *testing.B) {
	s, err := postgres.Open(context.Background(), store100k(b), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ResetTimer()
	for b.Loop() {
		list, _, err := s.ListEntries(context.Background())
		if err != nil || len(list) != 100_000 {
			b.Fatal(len(list), err)
		}
	}
	b.ReportMetric(float64(100_000*b.N)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkRestart100k measures what a restarting server does with the
// datastore before it is ready: Open (connect, check the schema) and
// ListEntries of 100,000 entries.
func BenchmarkRestart100k(b *testing.B) {
	conn := store100k(b)
	b.ResetTimer()
	for b.Loop() {
		s, err := postgres.Open(context.Background(), conn, nil)
		if err != nil {
			b.Fatal(err)
		}
		list, _, err := s.ListEntries(context.Background())
		if err != nil || len(list) != 100_000 {
			b.Fatal(len(list), err)
		}
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
}

// BenchmarkChangePropagation measures the time from calling CreateEntries
// (one entry) on server A to WatchEntryChanges on server B reporting its
// revision, and reports the median and the 99th percentile.
func BenchmarkChangePropagation(b *testing.B) {
	conn := pgtest.Start(b)
	a, err := postgres.Open(context.Background(), conn, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	bs, err := postgres.Open(context.Background(), conn, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer bs.Close()

	revs := make(chan int64, 1024)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go bs.WatchEntryChanges(ctx, func(rev int64) { revs <- rev }) //nolint:errcheck // returns nil at cancel
	if <-revs != 0 {
		b.Fatal("first report is not 0")
	}
	var lat []time.Duration
	i := 0
	b.ResetTimer()
	for b.Loop() {
		i++
		start := time.Now()
		res, err := a.CreateEntries(context.Background(), []registration.Entry{entry(fmt.Sprintf("/prop/%d", i))})
		if err != nil || res[0].Err != nil {
			b.Fatal(err, res)
		}
		for rev := range revs {
			if rev >= res[0].Entry.Revision {
				break
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}
