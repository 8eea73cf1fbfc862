package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/hallmarkid/hallmark/server/datastore"
	"github.com/hallmarkid/hallmark/server/datastore/datastoretest"
	"github.com/hallmarkid/hallmark/server/datastore/sqlite"
)

// openStore opens a store in a fresh temporary directory and closes it
// when the test ends.
func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	return openPath(t, filepath.Join(t.TempDir(), "datastore.db"))
}

func openPath(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	datastoretest.Run(t, func(t *testing.T) datastore.Store { return openStore(t) })
}
