package sqlstoretest

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/registration"
)

// BenchCreateEntries measures one CreateEntries call of 10,000 entries
// into a fresh database, and reports the process's CPU time per call as
// cpuMetric (the steadier figure on a shared machine).
func BenchCreateEntries10k(b *testing.B, h *Harness, cpuMetric string) {
	es := BenchEntries(10_000, "")
	var cpu time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s, err := h.Open(context.Background(), h.NewDB(b), nil)
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
	b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), cpuMetric)
}

// cpuTime returns the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchUpdateEntry measures one UpdateEntry (a new TTL) in a store holding
// entries: one transaction with the revision, the duplicate check, the row
// update and the event.
func BenchUpdateEntry(b *testing.B, h *Harness, entries []registration.Entry) {
	s := h.open(b, h.NewDB(b))
	res, err := s.CreateEntries(b.Context(), entries)
	if err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		e := res[i%len(res)].Entry
		e.X509SVIDTTL = time.Duration(i%7+1) * time.Minute
		if _, err := s.UpdateEntry(b.Context(), e); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// FillDB returns a fresh database holding batches × 10,000 entries.
func FillDB(b *testing.B, h *Harness, batches int) string {
	b.Helper()
	db := h.NewDB(b)
	s, err := h.Open(context.Background(), db, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for i := range batches {
		tag := ""
		if batches > 1 {
			tag = fmt.Sprintf("b%d-", i)
		}
		if _, err := s.CreateEntries(context.Background(), BenchEntries(10_000, tag)); err != nil {
			b.Fatal(err)
		}
	}
	return db
}

// BenchListEntries measures reading back the n entries stored in db.
func BenchListEntries(b *testing.B, h *Harness, db string, n int) {
	s := h.open(b, db)
	b.ResetTimer()
	for b.Loop() {
		list, _, err := s.ListEntries(context.Background())
		if err != nil || len(list) != n {
			b.Fatal(len(list), err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "entries/s")
}
