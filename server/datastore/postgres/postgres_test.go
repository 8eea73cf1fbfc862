package postgres_test

import (
	"context"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/internal/pgtest"
	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/datastore"
	"github.com/hallmarkid/hallmark/server/datastore/datastoretest"
	"github.com/hallmarkid/hallmark/server/datastore/postgres"
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
	s, err := postgres.Open(context.Background(), connString, nil)
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

var td = spiffeid.RequireTrustDomainFromString("example.org")

func entry(path string) registration.Entry {
	return registration.Entry{
		SPIFFEID:  spiffeid.RequireFromPath(td, path),
		ParentID:  spiffeid.RequireFromPath(td, "/agent/1"),
		Selectors: []registration.Selector{{Type: "unix", Value: "uid:1000"}},
	}
}
