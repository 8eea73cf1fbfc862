package sqlite_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/server/datastore/sqlite"
)

// BenchmarkUpdateEntry measures one UpdateEntry (a new TTL) in a store of
// 10,000 entries: a transaction with the duplicate check, the row update,
// the event and the revision.
func BenchmarkUpdateEntry(b *testing.B) {
	s, err := sqlite.Open(b.Context(), filepath.Join(b.TempDir(), "bench.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	res, err := s.CreateEntries(b.Context(), entries10k())
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
