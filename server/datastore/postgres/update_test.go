package postgres_test

import (
	"errors"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/datastore"
)

// TestWatchEntryUpdate: an update on one server is announced to a watcher
// on another exactly like a create, and refused updates announce nothing.
func TestWatchEntryUpdate(t *testing.T) {
	a, b, _ := twoServers(t)
	ctx := t.Context()
	w := watch(t, b)
	if got := w.next(t); got != 0 {
		t.Fatalf("first report = %d, want 0 (catch up after connecting)", got)
	}
	res, err := a.CreateEntries(ctx, []registration.Entry{entry("/u/1"), entry("/u/2")})
	if err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, res[1].Entry.Revision)

	// Refused: unknown ID, and a result similar to the other entry.
	missing := entry("/u/3")
	missing.ID = "no-such-entry"
	if _, err := a.UpdateEntry(ctx, missing); !errors.Is(err, datastore.ErrNotFound) {
		t.Fatalf("update of an unknown entry: err = %v, want ErrNotFound", err)
	}
	dup := entry("/u/2")
	dup.ID = res[0].Entry.ID
	if _, err := a.UpdateEntry(ctx, dup); !errors.Is(err, datastore.ErrAlreadyExists) {
		t.Fatalf("update to a similar entry: err = %v, want ErrAlreadyExists", err)
	}

	upd := res[0].Entry
	upd.X509SVIDTTL = 2 * time.Hour
	got, err := a.UpdateEntry(ctx, upd)
	if err != nil {
		t.Fatal(err)
	}
	if got.Revision != res[1].Entry.Revision+1 {
		t.Errorf("update revision = %d, want %d (refusals use none)", got.Revision, res[1].Entry.Revision+1)
	}
	if rev := w.next(t); rev != got.Revision {
		t.Errorf("after the update: report %d, want %d (nothing for the refusals)", rev, got.Revision)
	}
	events, err := b.EntryEventsSince(ctx, res[1].Entry.Revision)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || events[0] != (datastore.EntryEvent{Revision: got.Revision, EntryID: upd.ID}) {
		t.Errorf("events seen by the other server = %v, want one update event", events)
	}
	stored, err := b.GetEntry(ctx, upd.ID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.X509SVIDTTL != 2*time.Hour || stored.Revision != got.Revision {
		t.Errorf("other server reads TTL %s revision %d, want 2h0m0s and %d", stored.X509SVIDTTL, stored.Revision, got.Revision)
	}
}
