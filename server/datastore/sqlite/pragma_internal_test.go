package sqlite

import (
	"path/filepath"
	"testing"
)

// TestConnectionPragmas checks the settings durability and locking rely on
// on each pool's connections.
func TestConnectionPragmas(t *testing.T) {
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "ds.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tests := []struct {
		name   string
		pool   string
		pragma string
		want   string
	}{
		{"WAL", "write", "journal_mode", "wal"},
		{"synchronous FULL", "write", "synchronous", "2"},
		{"foreign keys", "write", "foreign_keys", "1"},
		{"busy timeout", "write", "busy_timeout", "10000"},
		{"writer may write", "write", "query_only", "0"},
		{"reader is query-only", "read", "query_only", "1"},
		{"reader busy timeout", "read", "busy_timeout", "10000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := s.writeDB
			if tt.pool == "read" {
				db = s.readDB
			}
			var got string
			if err := db.QueryRowContext(t.Context(), "PRAGMA "+tt.pragma).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("%s pool: PRAGMA %s = %q, want %q", tt.pool, tt.pragma, got, tt.want)
			}
		})
	}
	if _, err := s.readDB.ExecContext(t.Context(), "DELETE FROM kv"); err == nil {
		t.Error("the read pool accepted a write")
	}
}
