// Package sqlstoretest holds the tests the SQL backends share beyond the
// conformance suite (datastoretest): kill -9 durability, upgrades from an
// old schema, refusal of a newer one, rejected input, the entry round-trip
// fuzz target and the benchmarks, each written once and run by each
// backend's tests with its Harness.
//
// It must not import a backend; backends' tests import it.
package sqlstoretest

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/datastore"
	"github.com/hallmarkid/hallmark/server/datastore/sqlstore"
)

// Harness is what a backend gives the shared tests.
type Harness struct {
	// Name is the backend's error prefix ("sqlite").
	Name string
	// NoNUL: the backend refuses NUL bytes in text.
	NoNUL bool
	// NewDB returns the address (file path, connection string) of a fresh,
	// empty database that lives as long as tb.
	NewDB func(tb testing.TB) string
	// Open opens a Store on the database at db.
	Open func(ctx context.Context, db string, log *slog.Logger) (datastore.Store, error)
	// Raw connects to db bypassing the Store; the connection is closed
	// when tb ends.
	Raw func(tb testing.TB, db string) sqlstore.Querier
	// SchemaVersion is the backend's current schema version.
	SchemaVersion int
	// VersionTable creates the schema_version table as version 1 did.
	VersionTable string
	// Intact, if set, checks the database's own integrity after a kill.
	Intact func(tb testing.TB, raw sqlstore.Querier)
}

// MustOpen opens a store with open and closes it when tb ends.
func MustOpen[S datastore.Store](tb testing.TB, open func(context.Context, string, *slog.Logger) (S, error), db string) S {
	tb.Helper()
	s, err := open(context.Background(), db, nil)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

func (h *Harness) open(tb testing.TB, db string) datastore.Store {
	tb.Helper()
	return MustOpen(tb, h.Open, db)
}

var td = spiffeid.RequireTrustDomainFromString("example.org")

// Entry returns a minimal entry for path under one parent.
func Entry(path string) registration.Entry {
	return registration.Entry{
		SPIFFEID:  spiffeid.RequireFromPath(td, path),
		ParentID:  spiffeid.RequireFromPath(td, "/agent/1"),
		Selectors: []registration.Selector{{Type: "unix", Value: "uid:1000"}},
	}
}

// CreateOne creates e and returns it as stored.
func CreateOne(tb testing.TB, s datastore.Entries, e registration.Entry) registration.Entry {
	tb.Helper()
	res, err := s.CreateEntries(context.Background(), []registration.Entry{e})
	if err != nil || res[0].Err != nil {
		tb.Fatalf("CreateEntries: %v / %v", err, res)
	}
	return res[0].Entry
}

// BenchEntries returns n distinct entries shaped like real ones: three
// selectors, a DNS name, a federated trust domain. tag keeps batches
// distinct.
func BenchEntries(n int, tag string) []registration.Entry {
	es := make([]registration.Entry, n)
	for i := range es {
		es[i] = registration.Entry{
			SPIFFEID: spiffeid.RequireFromPath(td, fmt.Sprintf("/ns/ns%d/sa/workload-%s%d", i%50, tag, i)),
			ParentID: spiffeid.RequireFromPath(td, fmt.Sprintf("/agent/k8s_psat/cluster/node-%d", i%100)),
			Selectors: []registration.Selector{
				{Type: "k8s", Value: fmt.Sprintf("ns:ns%d", i%50)},
				{Type: "k8s", Value: fmt.Sprintf("sa:workload-%s%d", tag, i)},
				{Type: "k8s", Value: "container-name:app"},
			},
			X509SVIDTTL:   time.Hour,
			DNSNames:      []string{fmt.Sprintf("workload-%d.ns%d.svc", i, i%50)},
			FederatesWith: []spiffeid.TrustDomain{spiffeid.RequireTrustDomainFromString("partner.example")},
		}
	}
	return es
}
