package datastoretest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/datastore"
)

// testEntryUpdate checks that UpdateEntry replaces every mutable field,
// keeps ID and CreatedAt, and that what it returns is what is stored.
func testEntryUpdate(t *testing.T, s datastore.Store) {
	c := ctx(t)
	created := createOne(t, s, entry("/web", "unix:uid:1000"))
	full := registration.Entry{
		ID:       created.ID,
		SPIFFEID: id("/ns/prod/sa/web"),
		ParentID: id("/agent/2"),
		Selectors: []registration.Selector{
			{Type: "k8s", Value: "ns:prod"},
			{Type: "unix", Value: "path:/usr/bin/wéb ✓"},
			{Type: "docker", Value: "label:a=b:c"},
		},
		X509SVIDTTL:   90 * time.Minute,
		JWTSVIDTTL:    5*time.Minute + 7*time.Nanosecond,
		DNSNames:      []string{"web.prod.svc", "*.web.example.org"},
		FederatesWith: []spiffeid.TrustDomain{spiffeid.RequireTrustDomainFromString("partner.example")},
		Admin:         true,
		Downstream:    true,
		Hint:          "external ✓",
		// Ignored by the store.
		Revision:  12345,
		CreatedAt: time.Unix(1, 0),
	}
	minimal := entry("/minimal", "unix:uid:0")
	minimal.ID = created.ID

	last := created.Revision
	for _, e := range []registration.Entry{full, minimal} {
		got, err := s.UpdateEntry(c, e)
		if err != nil {
			t.Fatalf("UpdateEntry to %s: %v", e.SPIFFEID, err)
		}
		if got.Revision <= last {
			t.Errorf("UpdateEntry to %s: Revision %d, want > %d", e.SPIFFEID, got.Revision, last)
		}
		last = got.Revision
		want := e
		want.Revision, want.CreatedAt = got.Revision, created.CreatedAt
		if d := diffEntry(got, want); d != "" {
			t.Errorf("UpdateEntry to %s returned: %s", e.SPIFFEID, d)
		}
		stored, err := s.GetEntry(c, created.ID)
		if err != nil {
			t.Fatalf("GetEntry: %v", err)
		}
		if d := diffEntry(stored, want); d != "" {
			t.Errorf("GetEntry after update to %s: %s", e.SPIFFEID, d)
		}
		list, rev, err := s.ListEntries(c)
		if err != nil {
			t.Fatalf("ListEntries: %v", err)
		}
		if len(list) != 1 || rev != got.Revision {
			t.Fatalf("ListEntries: %d entries at revision %d, want 1 at %d", len(list), rev, got.Revision)
		}
		if d := diffEntry(list[0], want); d != "" {
			t.Errorf("ListEntries after update to %s: %s", e.SPIFFEID, d)
		}
	}

	// The returned entry does not alias the caller's slices.
	e := full
	e.Selectors = append([]registration.Selector{}, full.Selectors...)
	got, err := s.UpdateEntry(c, e)
	if err != nil {
		t.Fatalf("UpdateEntry: %v", err)
	}
	e.Selectors[0].Value = "changed"
	if got.Selectors[0].Value == "changed" {
		t.Error("UpdateEntry result aliases the caller's selectors")
	}
}

// testEntryUpdateEvents checks that an update is reported exactly like a
// create: one event, not deleted, at the entry's new revision.
func testEntryUpdateEvents(t *testing.T, s datastore.Store) {
	c := ctx(t)
	a := createOne(t, s, entry("/a", "unix:uid:1"))
	b := createOne(t, s, entry("/b", "unix:uid:1"))

	upd := a
	upd.Selectors = []registration.Selector{{Type: "unix", Value: "uid:2"}}
	ua, err := s.UpdateEntry(c, upd)
	if err != nil {
		t.Fatalf("UpdateEntry: %v", err)
	}
	if _, err := s.DeleteEntry(c, b.ID); err != nil {
		t.Fatalf("DeleteEntry: %v", err)
	}
	upd.X509SVIDTTL = time.Hour
	ua2, err := s.UpdateEntry(c, upd)
	if err != nil {
		t.Fatalf("UpdateEntry: %v", err)
	}

	events, err := s.EntryEventsSince(c, b.Revision)
	if err != nil {
		t.Fatalf("EntryEventsSince: %v", err)
	}
	want := []datastore.EntryEvent{
		{Revision: ua.Revision, EntryID: a.ID},
		{Revision: ua.Revision + 1, EntryID: b.ID, Deleted: true},
		{Revision: ua2.Revision, EntryID: a.ID},
	}
	if fmt.Sprint(events) != fmt.Sprint(want) {
		t.Errorf("EntryEventsSince(%d) = %v, want %v", b.Revision, events, want)
	}
	if ua.Revision != b.Revision+1 || ua2.Revision != ua.Revision+2 {
		t.Errorf("revisions %d, %d after %d: want consecutive revisions", ua.Revision, ua2.Revision, b.Revision)
	}
	_, rev, err := s.ListEntries(c)
	if err != nil {
		t.Fatalf("ListEntries: %v", err)
	}
	if rev != ua2.Revision {
		t.Errorf("ListEntries revision = %d, want %d", rev, ua2.Revision)
	}
}

// testEntryUpdateRefused checks the refusals: unknown ID, similar to
// another entry, an entry the store cannot hold. None changes anything.
func testEntryUpdateRefused(t *testing.T, s datastore.Store) {
	a := createOne(t, s, entry("/web", "unix:uid:1", "unix:gid:2"))
	b := createOne(t, s, entry("/db", "unix:uid:3"))
	gone := createOne(t, s, entry("/gone", "unix:uid:4"))
	if _, err := s.DeleteEntry(ctx(t), gone.ID); err != nil {
		t.Fatalf("DeleteEntry: %v", err)
	}
	_, rev0, err := s.ListEntries(ctx(t))
	if err != nil {
		t.Fatalf("ListEntries: %v", err)
	}

	withID := func(e registration.Entry, id string) registration.Entry { e.ID = id; return e }
	noSPIFFEID := withID(entry("/x", "unix:uid:1"), b.ID)
	noSPIFFEID.SPIFFEID = spiffeid.ID{}
	noParent := withID(entry("/x", "unix:uid:1"), b.ID)
	noParent.ParentID = spiffeid.ID{}
	negativeTTL := withID(entry("/x", "unix:uid:1"), b.ID)
	negativeTTL.X509SVIDTTL = -time.Second
	tests := []struct {
		name    string
		e       registration.Entry
		wantIs  error // nil: any error
		wantErr string
	}{
		{name: "unknown ID", e: withID(entry("/x", "unix:uid:1"), "no-such-entry"), wantIs: datastore.ErrNotFound},
		{name: "empty ID", e: entry("/x", "unix:uid:1"), wantIs: datastore.ErrNotFound},
		{name: "deleted entry", e: withID(entry("/x", "unix:uid:1"), gone.ID), wantIs: datastore.ErrNotFound},
		{name: "similar to another entry", e: withID(entry("/web", "unix:gid:2", "unix:uid:1"), b.ID), wantIs: datastore.ErrAlreadyExists},
		{name: "similar with a repeated selector", e: withID(entry("/web", "unix:gid:2", "unix:uid:1", "unix:uid:1"), b.ID), wantIs: datastore.ErrAlreadyExists},
		{name: "no SPIFFE ID", e: noSPIFFEID, wantErr: "SPIFFE ID"},
		{name: "no parent ID", e: noParent, wantErr: "parent ID"},
		{name: "negative TTL", e: negativeTTL, wantErr: "TTL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ctx(t)
			got, err := s.UpdateEntry(c, tt.e)
			if err == nil {
				t.Fatalf("UpdateEntry succeeded (%+v), want an error", got)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("UpdateEntry: err = %v, want %v", err, tt.wantIs)
			}
			if !containsFold(err.Error(), tt.wantErr) {
				t.Errorf("UpdateEntry: err = %v, want it to mention %q", err, tt.wantErr)
			}
			for _, want := range []registration.Entry{a, b} {
				stored, err := s.GetEntry(c, want.ID)
				if err != nil {
					t.Fatalf("GetEntry: %v", err)
				}
				if d := diffEntry(stored, want); d != "" {
					t.Errorf("entry %s changed by a refused update: %s", want.SPIFFEID, d)
				}
			}
			if _, rev, err := s.ListEntries(c); err != nil || rev != rev0 {
				t.Errorf("revision after a refused update = %d (err %v), want %d", rev, err, rev0)
			}
			if events, err := s.EntryEventsSince(c, rev0); err != nil || len(events) != 0 {
				t.Errorf("refused update left events %v (err %v)", events, err)
			}
		})
	}
}

// testEntryUpdateUniqueness checks that the uniqueness rule follows the
// update: an entry may be updated to its own key, and the key it leaves
// is free for a new entry while the key it takes is not.
func testEntryUpdateUniqueness(t *testing.T, s datastore.Store) {
	c := ctx(t)
	a := createOne(t, s, entry("/web", "unix:uid:1", "unix:gid:2"))

	same := a
	same.Selectors = []registration.Selector{{Type: "unix", Value: "gid:2"}, {Type: "unix", Value: "uid:1"}}
	same.Hint = "reordered"
	if _, err := s.UpdateEntry(c, same); err != nil {
		t.Fatalf("UpdateEntry to its own key (selectors reordered): %v", err)
	}

	moved := a
	moved.Selectors = []registration.Selector{{Type: "unix", Value: "uid:9"}}
	if _, err := s.UpdateEntry(c, moved); err != nil {
		t.Fatalf("UpdateEntry: %v", err)
	}
	res, err := s.CreateEntries(c, []registration.Entry{entry("/web", "unix:uid:1", "unix:gid:2"), entry("/web", "unix:uid:9")})
	if err != nil {
		t.Fatalf("CreateEntries: %v", err)
	}
	if res[0].Err != nil {
		t.Errorf("create with the key the update left: err = %v, want nil", res[0].Err)
	}
	if !errors.Is(res[1].Err, datastore.ErrAlreadyExists) {
		t.Errorf("create with the key the update took: err = %v, want ErrAlreadyExists", res[1].Err)
	}
}

// testConcurrentEntryUpdates runs updates of one entry and creates of
// others at once: every call succeeds, each gets its own revision and
// event, and the stored entry is the one of the last event.
func testConcurrentEntryUpdates(t *testing.T, s datastore.Store) {
	target := createOne(t, s, entry("/target", "unix:uid:1"))
	const writers, each = 4, 8
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		byRv = make(map[int64]string) // revision -> hint written
	)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				e := target
				e.Hint = fmt.Sprintf("w%d-%d", w, i)
				got, err := s.UpdateEntry(ctx(t), e)
				if err != nil {
					t.Errorf("UpdateEntry: %v", err)
					return
				}
				mu.Lock()
				byRv[got.Revision] = e.Hint
				mu.Unlock()
				if _, err := s.CreateEntries(ctx(t), []registration.Entry{entry(fmt.Sprintf("/w%d/%d", w, i), "unix:uid:1")}); err != nil {
					t.Errorf("CreateEntries: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if len(byRv) != writers*each {
		t.Fatalf("%d distinct update revisions, want %d", len(byRv), writers*each)
	}
	events, err := s.EntryEventsSince(ctx(t), target.Revision)
	if err != nil {
		t.Fatalf("EntryEventsSince: %v", err)
	}
	if len(events) != 2*writers*each {
		t.Errorf("%d events, want %d", len(events), 2*writers*each)
	}
	var lastUpdate int64
	for _, ev := range events {
		if ev.EntryID == target.ID {
			if _, ok := byRv[ev.Revision]; !ok {
				t.Errorf("event %+v matches no update's revision", ev)
			}
			lastUpdate = ev.Revision
		}
	}
	stored, err := s.GetEntry(ctx(t), target.ID)
	if err != nil {
		t.Fatalf("GetEntry: %v", err)
	}
	if stored.Revision != lastUpdate || stored.Hint != byRv[lastUpdate] {
		t.Errorf("stored entry at revision %d with hint %q, want the last update's %d and %q",
			stored.Revision, stored.Hint, lastUpdate, byRv[lastUpdate])
	}
}

// containsFold reports whether s contains sub, ignoring case.
func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}
