package postgres_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/hallmarkid/hallmark/internal/pgtest"
	"github.com/hallmarkid/hallmark/server/datastore"
	"github.com/hallmarkid/hallmark/server/datastore/postgres"
)

// A database written by a version 1 binary (no agent bans) opens, is
// migrated in place, and its agents are not banned.
func TestUpgradeFromSchemaVersion1(t *testing.T) {
	v1, err := os.ReadFile(filepath.Join("migrations", "0001_init.sql"))
	if err != nil {
		t.Fatal(err)
	}
	conn := pgtest.Start(t)
	raw := rawConn(t, conn)
	for _, stmt := range []string{string(v1),
		`CREATE TABLE schema_version (id integer NOT NULL PRIMARY KEY CHECK (id = 1), version integer NOT NULL)`,
		`INSERT INTO schema_version (id, version) VALUES (1, 1)`,
		`INSERT INTO agents (id, attestation_type, selectors, serial_number, expires_at, can_reattest, created_at, updated_at)
			VALUES ('spiffe://example.org/agent/tpm/old', 'tpm', '[]', '42', NULL, true, 1, 1)`,
	} {
		if _, err := raw.Exec(t.Context(), stmt); err != nil {
			t.Fatalf("building a version 1 database: %v", err)
		}
	}
	s := openConn(t, conn)
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
	if err := raw.QueryRow(t.Context(), "SELECT version FROM schema_version").Scan(&v); err != nil || v != postgres.SchemaVersion {
		t.Errorf("schema_version = %d (err %v), want %d", v, err, postgres.SchemaVersion)
	}
}
