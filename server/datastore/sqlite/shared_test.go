package sqlite_test

import (
	"context"
	"database/sql"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/hallmarkid/hallmark/server/datastore"
	"github.com/hallmarkid/hallmark/server/datastore/sqlite"
	"github.com/hallmarkid/hallmark/server/datastore/sqlstore"
	"github.com/hallmarkid/hallmark/server/datastore/sqlstore/sqlstoretest"
)

// harness runs sqlstoretest's shared tests on SQLite files.
var harness = &sqlstoretest.Harness{
	Name:  "sqlite",
	NewDB: func(tb testing.TB) string { return filepath.Join(tb.TempDir(), "ds.db") },
	Open: func(ctx context.Context, path string, log *slog.Logger) (datastore.Store, error) {
		return sqlite.Open(ctx, path, log)
	},
	Raw: func(tb testing.TB, path string) sqlstore.Querier {
		return sqlite.RawQuerier(rawDB(tb, path))
	},
	SchemaVersion: sqlite.SchemaVersion,
	VersionTable:  `CREATE TABLE schema_version (id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL) STRICT`,
	Intact: func(tb testing.TB, raw sqlstore.Querier) {
		var check string
		if err := raw.QueryRow(context.Background(), "PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
			tb.Fatalf("integrity_check = %q (err %v)", check, err)
		}
	},
}

// rawDB opens the file directly, bypassing the Store.
func rawDB(tb testing.TB, path string) *sql.DB {
	tb.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		tb.Fatalf("sql.Open: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// TestHelperWriter is the child process of TestKill9Durability.
func TestHelperWriter(t *testing.T) { sqlstoretest.KillHelper(t, harness) }

func TestKill9Durability(t *testing.T) { sqlstoretest.Kill9Durability(t, harness) }

func TestUpgradeFromSchemaVersion1(t *testing.T) {
	sqlstoretest.UpgradeFromSchemaVersion1(t, harness)
}

func TestRefuseNewerSchema(t *testing.T) { sqlstoretest.RefuseNewerSchema(t, harness) }

func TestRejectedInput(t *testing.T) { sqlstoretest.RejectedInput(t, harness) }

func FuzzEntryRoundTrip(f *testing.F) { sqlstoretest.FuzzEntryRoundTrip(f, harness) }

// BenchmarkCreateEntries10k measures one CreateEntries call of 10,000
// entries into a fresh database.
func BenchmarkCreateEntries10k(b *testing.B) {
	sqlstoretest.BenchCreateEntries10k(b, harness, "cpu-ms/op")
}

// BenchmarkListEntries10k measures reading back 10,000 entries.
func BenchmarkListEntries10k(b *testing.B) {
	sqlstoretest.BenchListEntries(b, harness, sqlstoretest.FillDB(b, harness, 1), 10_000)
}

// BenchmarkUpdateEntry measures one UpdateEntry (a new TTL) in a store of
// 10,000 entries.
func BenchmarkUpdateEntry(b *testing.B) {
	sqlstoretest.BenchUpdateEntry(b, harness, sqlstoretest.BenchEntries(10_000, ""))
}
