package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/internal/pgtest"
	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/datastore/postgres"
	"github.com/hallmarkid/hallmark/server/datastore/sqlstore/sqlstoretest"
)

// BenchmarkRestart100k measures what a restarting server does with the
// datastore before it is ready: Open (connect, check the schema) and
// ListEntries of 100,000 entries.
func BenchmarkRestart100k(b *testing.B) {
	conn := sqlstoretest.FillDB(b, harness, 10)
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
