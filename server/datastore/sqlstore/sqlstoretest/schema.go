package sqlstoretest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hallmarkid/hallmark/server/datastore"
)

// UpgradeFromSchemaVersion1: a database written by a version 1 binary (no
// agent bans) opens, is migrated in place, and its agents are not banned.
// It runs in the backend's package directory (migrations/0001_init.sql).
func UpgradeFromSchemaVersion1(t *testing.T, h *Harness) {
	v1, err := os.ReadFile(filepath.Join("migrations", "0001_init.sql"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	db := h.NewDB(t)
	raw := h.Raw(t, db)
	for _, stmt := range []string{string(v1), h.VersionTable, `INSERT INTO schema_version (id, version) VALUES (1, 1)`} {
		if _, err := raw.Exec(ctx, stmt); err != nil {
			t.Fatalf("building a version 1 database: %v", err)
		}
	}
	if _, err := raw.Exec(ctx, `INSERT INTO agents (id, attestation_type, selectors, serial_number, expires_at, can_reattest, created_at, updated_at)
			VALUES ('spiffe://example.org/agent/tpm/old', 'tpm', '[]', '42', NULL, $1, 1, 1)`, true); err != nil {
		t.Fatalf("building a version 1 database: %v", err)
	}

	s := h.open(t, db)
	a, err := s.GetAgent(ctx, "spiffe://example.org/agent/tpm/old")
	if err != nil || a.Banned || a.SerialNumber != "42" || a.NewSerialNumber != "" {
		t.Fatalf("agent from version 1: %+v (err %v)", a, err)
	}
	if err := s.BanAgent(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateAgent(ctx, a); !errors.Is(err, datastore.ErrBanned) {
		t.Fatalf("UpdateAgent of a banned agent from version 1: %v, want ErrBanned", err)
	}
	var v int
	if err := h.Raw(t, db).QueryRow(ctx, "SELECT version FROM schema_version").Scan(&v); err != nil || v != h.SchemaVersion {
		t.Errorf("schema_version = %d (err %v), want %d", v, err, h.SchemaVersion)
	}
}

// RefuseNewerSchema: a database whose schema is newer than the code is
// refused, and left as it was.
func RefuseNewerSchema(t *testing.T, h *Harness) {
	ctx := t.Context()
	db := h.NewDB(t)
	s, err := h.Open(ctx, db, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	raw := h.Raw(t, db)
	var v int
	if err := raw.QueryRow(ctx, "SELECT version FROM schema_version").Scan(&v); err != nil || v != h.SchemaVersion {
		t.Fatalf("schema_version = %d (err %v), want %d", v, err, h.SchemaVersion)
	}
	future := h.SchemaVersion + 1
	if _, err := raw.Exec(ctx, "UPDATE schema_version SET version = $1", future); err != nil {
		t.Fatal(err)
	}

	s, err = h.Open(ctx, db, nil)
	if err == nil || !strings.Contains(err.Error(), "newer than this binary") {
		if err == nil {
			s.Close()
		}
		t.Fatalf("Open of a future schema: err = %v, want a refusal", err)
	}
	if err := raw.QueryRow(ctx, "SELECT version FROM schema_version").Scan(&v); err != nil || v != future {
		t.Errorf("refused open changed schema_version to %d (err %v)", v, err)
	}
}
