package sqlite_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/hallmarkid/hallmark/server/datastore"
	"github.com/hallmarkid/hallmark/server/datastore/sqlite"
)

// A database written by a version 1 binary (no agent bans) opens, is
// migrated in place, and its agents are not banned.
func TestUpgradeFromSchemaVersion1(t *testing.T) {
	v1, err := os.ReadFile(filepath.Join("migrations", "0001_init.sql"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "v1.db")
	db := rawDB(t, path)
	for _, stmt := range []string{string(v1),
		`CREATE TABLE schema_version (id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL) STRICT`,
		`INSERT INTO schema_version (id, version) VALUES (1, 1)`,
		`INSERT INTO agents (id, attestation_type, selectors, serial_number, expires_at, can_reattest, created_at, updated_at)
			VALUES ('spiffe://example.org/agent/tpm/old', 'tpm', '[]', '42', NULL, 1, 1, 1)`,
	} {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("building a version 1 database: %v", err)
		}
	}
	db.Close()

	s, err := sqlite.Open(t.Context(), path, nil)
	if err != nil {
		t.Fatalf("Open of a version 1 database: %v", err)
	}
	defer s.Close()
	a, err := s.GetAgent(t.Context(), "spiffe://example.org/agent/tpm/old")
	if err != nil || a.Banned || a.SerialNumber != "42" || a.NewSerialNumber != "" {
		t.Fatalf("agent from version 1: %+v (err %v)", a, err)
	}
	if err := s.BanAgent(t.Context(), a.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateAgent(t.Context(), a); !errors.Is(err, datastore.ErrBanned) {
		t.Fatalf("UpdateAgent of a banned agent from version 1: %v, want ErrBanned", err)
	}
	var v int
	if err := rawDB(t, path).QueryRow("SELECT version FROM schema_version").Scan(&v); err != nil || v != sqlite.SchemaVersion {
		t.Errorf("schema_version = %d (err %v), want %d", v, err, sqlite.SchemaVersion)
	}
}
