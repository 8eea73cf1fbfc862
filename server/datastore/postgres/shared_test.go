package postgres_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/hallmarkid/hallmark/internal/pgtest"
	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/datastore"
	"github.com/hallmarkid/hallmark/server/datastore/postgres"
	"github.com/hallmarkid/hallmark/server/datastore/sqlstore"
	"github.com/hallmarkid/hallmark/server/datastore/sqlstore/sqlstoretest"
)

// harness runs sqlstoretest's shared tests on databases of the test
// cluster.
var harness = &sqlstoretest.Harness{
	Name:  "postgres",
	NoNUL: true,
	NewDB: func(tb testing.TB) string { return pgtest.Start(tb) },
	Open: func(ctx context.Context, connString string, log *slog.Logger) (datastore.Store, error) {
		return postgres.Open(ctx, connString, log)
	},
	Raw: func(tb testing.TB, connString string) sqlstore.Querier {
		return postgres.RawQuerier(rawConn(tb, connString))
	},
	SchemaVersion: postgres.SchemaVersion,
	VersionTable:  `CREATE TABLE schema_version (id integer NOT NULL PRIMARY KEY CHECK (id = 1), version integer NOT NULL)`,
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
// entries into a fresh database; the CPU time is the client's (the
// database server's is not included).
func BenchmarkCreateEntries10k(b *testing.B) {
	sqlstoretest.BenchCreateEntries10k(b, harness, "client-cpu-ms/op")
}

// BenchmarkListEntries100k measures reading back 100,000 entries, the
// bulk of a server's start-up.
func BenchmarkListEntries100k(b *testing.B) {
	sqlstoretest.BenchListEntries(b, harness, sqlstoretest.FillDB(b, harness, 10), 100_000)
}

// BenchmarkUpdateEntry measures one UpdateEntry (a new TTL) in a store of
// 10,000 entries: lock the revision, duplicate check, row update, event,
// revision and NOTIFY in one transaction.
func BenchmarkUpdateEntry(b *testing.B) {
	es := make([]registration.Entry, 10_000)
	for i := range es {
		es[i] = entry(fmt.Sprintf("/bench/%d", i))
	}
	sqlstoretest.BenchUpdateEntry(b, harness, es)
}
