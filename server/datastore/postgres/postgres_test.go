package postgres_test

import (
	"testing"

	"github.com/hallmarkid/hallmark/internal/pgtest"
	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/datastore"
	"github.com/hallmarkid/hallmark/server/datastore/datastoretest"
	"github.com/hallmarkid/hallmark/server/datastore/postgres"
	"github.com/hallmarkid/hallmark/server/datastore/sqlstore/sqlstoretest"
)

// openStore opens a store on a fresh database and closes it when the test
// ends.
func openStore(t testing.TB) *postgres.Store {
	t.Helper()
	return openConn(t, pgtest.Start(t))
}

// openConn opens a store on an existing database, as another server would.
func openConn(t testing.TB, connString string) *postgres.Store {
	t.Helper()
	return sqlstoretest.MustOpen(t, postgres.Open, connString)
}

func TestConformance(t *testing.T) {
	datastoretest.Run(t, func(t *testing.T) datastore.Store { return openStore(t) })
}

var entry = sqlstoretest.Entry

func createOne(t testing.TB, s *postgres.Store, e registration.Entry) registration.Entry {
	t.Helper()
	return sqlstoretest.CreateOne(t, s, e)
}
