package datastoretest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/datastore"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func testEntryCreateGetListDelete(t *testing.T, s datastore.Store) {
	c := ctx(t)
	before := time.Now()
	created := createOne(t, s, entry("/web", "unix:uid:1000", "unix:gid:1000"))
	after := time.Now()
	if created.ID == "" {
		t.Fatal("created entry has no ID")
	}
	if created.Revision <= 0 {
		t.Errorf("created entry Revision = %d, want > 0", created.Revision)
	}
	checkCreatedAt(t, "CreatedAt", created.CreatedAt, before, after)

	got, err := s.GetEntry(c, created.ID)
	if err != nil {
		t.Fatalf("GetEntry: %v", err)
	}
	if d := diffEntry(got, created); d != "" {
		t.Errorf("GetEntry differs from CreateEntries result: %s", d)
	}

	list, rev, err := s.ListEntries(c)
	if err != nil {
		t.Fatalf("ListEntries: %v", err)
	}
	if len(list) != 1 {
		t.Fatalf("ListEntries returned %d entries, want 1", len(list))
	}
	if d := diffEntry(list[0], created); d != "" {
		t.Errorf("ListEntries differs from CreateEntries result: %s", d)
	}
	if rev != created.Revision {
		t.Errorf("ListEntries revision = %d, want %d", rev, created.Revision)
	}

	deleted, err := s.DeleteEntry(c, created.ID)
	if err != nil {
		t.Fatalf("DeleteEntry: %v", err)
	}
	if d := diffEntry(deleted, created); d != "" {
		t.Errorf("DeleteEntry result differs from the stored entry: %s", d)
	}
	if _, err := s.GetEntry(c, created.ID); !errors.Is(err, datastore.ErrNotFound) {
		t.Errorf("GetEntry after delete: err = %v, want ErrNotFound", err)
	}
	if _, err := s.DeleteEntry(c, created.ID); !errors.Is(err, datastore.ErrNotFound) {
		t.Errorf("second DeleteEntry: err = %v, want ErrNotFound", err)
	}
	list, rev2, err := s.ListEntries(c)
	if err != nil {
		t.Fatalf("ListEntries: %v", err)
	}
	if len(list) != 0 {
		t.Errorf("ListEntries after delete returned %d entries, want 0", len(list))
	}
	if rev2 <= rev {
		t.Errorf("revision after delete = %d, want > %d", rev2, rev)
	}
}

func testEntryIDs(t *testing.T, s datastore.Store) {
	c := ctx(t)
	a := createOne(t, s, entry("/a", "unix:uid:1"))
	b := createOne(t, s, entry("/b", "unix:uid:1"))
	if a.ID == "" || b.ID == "" || a.ID == b.ID {
		t.Fatalf("assigned IDs %q and %q, want distinct non-empty IDs", a.ID, b.ID)
	}

	mine := entry("/c", "unix:uid:1")
	mine.ID = "operator-chosen-id"
	if got := createOne(t, s, mine); got.ID != mine.ID {
		t.Errorf("caller-chosen ID came back as %q, want %q", got.ID, mine.ID)
	}

	// The same ID again, with different content: reported for that entry,
	// the rest of the batch proceeds.
	again := entry("/d", "unix:uid:2")
	again.ID = mine.ID
	res, err := s.CreateEntries(c, []registration.Entry{again, entry("/e", "unix:uid:3")})
	if err != nil {
		t.Fatalf("CreateEntries: %v", err)
	}
	if len(res) != 2 {
		t.Fatalf("CreateEntries returned %d results, want 2", len(res))
	}
	if !errors.Is(res[0].Err, datastore.ErrAlreadyExists) {
		t.Errorf("taken ID: err = %v, want ErrAlreadyExists", res[0].Err)
	}
	if res[1].Err != nil {
		t.Errorf("second entry: err = %v, want nil", res[1].Err)
	}
	got, err := s.GetEntry(c, mine.ID)
	if err != nil {
		t.Fatalf("GetEntry: %v", err)
	}
	if got.SPIFFEID != mine.SPIFFEID {
		t.Errorf("entry %q was overwritten: SPIFFE ID %s, want %s", mine.ID, got.SPIFFEID, mine.SPIFFEID)
	}
}

func testEntryRoundTrip(t *testing.T, s datastore.Store) {
	c := ctx(t)
	full := registration.Entry{
		SPIFFEID: id("/ns/prod/sa/web"),
		ParentID: id("/spire/agent/tpm/9f2c"),
		// Deliberately unsorted, with colons and non-ASCII in values.
		Selectors: []registration.Selector{
			{Type: "k8s", Value: "ns:prod"},
			{Type: "docker", Value: "label:com.example.app=web:v1"},
			{Type: "k8s", Value: "sa:web"},
			{Type: "unix", Value: "path:/usr/bin/wéb ✓"},
		},
		X509SVIDTTL:   90 * time.Minute,
		JWTSVIDTTL:    5*time.Minute + 7*time.Nanosecond,
		DNSNames:      []string{"web.prod.svc", "*.web.example.org", "a-b.example"},
		FederatesWith: []spiffeid.TrustDomain{spiffeid.RequireTrustDomainFromString("partner.example"), spiffeid.RequireTrustDomainFromString("other.test")},
		Admin:         true,
		Downstream:    true,
		Hint:          "external ✓ \"quoted\" <tag> & more",
	}
	minimal := entry("/minimal", "unix:uid:0")

	for _, e := range []registration.Entry{full, minimal} {
		created := createOne(t, s, e)
		want := e
		want.ID, want.Revision, want.CreatedAt = created.ID, created.Revision, created.CreatedAt
		if d := diffEntry(created, want); d != "" {
			t.Errorf("CreateEntries result for %s: %s", e.SPIFFEID, d)
		}
		got, err := s.GetEntry(c, created.ID)
		if err != nil {
			t.Fatalf("GetEntry: %v", err)
		}
		if d := diffEntry(got, want); d != "" {
			t.Errorf("GetEntry %s: %s", e.SPIFFEID, d)
		}
	}
	list, _, err := s.ListEntries(c)
	if err != nil {
		t.Fatalf("ListEntries: %v", err)
	}
	for _, got := range list {
		if got.SPIFFEID != full.SPIFFEID {
			continue
		}
		want := full
		want.ID, want.Revision, want.CreatedAt = got.ID, got.Revision, got.CreatedAt
		if d := diffEntry(got, want); d != "" {
			t.Errorf("ListEntries %s: %s", full.SPIFFEID, d)
		}
	}
}

func testEntryRevisionsAndEvents(t *testing.T, s datastore.Store) {
	c := ctx(t)
	_, rev0, err := s.ListEntries(c)
	if err != nil {
		t.Fatalf("ListEntries: %v", err)
	}
	res, err := s.CreateEntries(c, []registration.Entry{entry("/a", "unix:uid:1"), entry("/b", "unix:uid:1")})
	if err != nil {
		t.Fatalf("CreateEntries: %v", err)
	}
	a, b := res[0].Entry, res[1].Entry
	cc := createOne(t, s, entry("/c", "unix:uid:1"))
	if _, err := s.DeleteEntry(c, a.ID); err != nil {
		t.Fatalf("DeleteEntry: %v", err)
	}

	events, err := s.EntryEventsSince(c, rev0)
	if err != nil {
		t.Fatalf("EntryEventsSince: %v", err)
	}
	want := []struct {
		id      string
		deleted bool
	}{{a.ID, false}, {b.ID, false}, {cc.ID, false}, {a.ID, true}}
	if len(events) != len(want) {
		t.Fatalf("EntryEventsSince(%d) returned %d events (%v), want %d", rev0, len(events), events, len(want))
	}
	last := rev0
	for i, ev := range events {
		if ev.EntryID != want[i].id || ev.Deleted != want[i].deleted {
			t.Errorf("event %d = %+v, want entry %s deleted=%v", i, ev, want[i].id, want[i].deleted)
		}
		if ev.Revision <= last {
			t.Errorf("event %d revision %d, want > %d (strictly increasing)", i, ev.Revision, last)
		}
		last = ev.Revision
	}
	for i, e := range []registration.Entry{a, b, cc} {
		if events[i].Revision != e.Revision {
			t.Errorf("entry %s: Revision %d, its create event has %d", e.SPIFFEID, e.Revision, events[i].Revision)
		}
	}

	tail, err := s.EntryEventsSince(c, events[1].Revision)
	if err != nil {
		t.Fatalf("EntryEventsSince: %v", err)
	}
	if len(tail) != 2 || tail[0] != events[2] || tail[1] != events[3] {
		t.Errorf("EntryEventsSince(%d) = %v, want %v", events[1].Revision, tail, events[2:])
	}
	if none, err := s.EntryEventsSince(c, last); err != nil || len(none) != 0 {
		t.Errorf("EntryEventsSince(latest) = %v, %v; want no events", none, err)
	}

	list, rev, err := s.ListEntries(c)
	if err != nil {
		t.Fatalf("ListEntries: %v", err)
	}
	if rev != last {
		t.Errorf("ListEntries revision = %d, want the last event's %d", rev, last)
	}
	if len(list) != 2 {
		t.Errorf("ListEntries returned %d entries, want 2", len(list))
	}
}

func testEntryNotFound(t *testing.T, s datastore.Store) {
	c := ctx(t)
	if _, err := s.GetEntry(c, "no-such-entry"); !errors.Is(err, datastore.ErrNotFound) {
		t.Errorf("GetEntry: err = %v, want ErrNotFound", err)
	}
	if _, err := s.DeleteEntry(c, "no-such-entry"); !errors.Is(err, datastore.ErrNotFound) {
		t.Errorf("DeleteEntry: err = %v, want ErrNotFound", err)
	}
	_, rev, err := s.ListEntries(c)
	if err != nil {
		t.Fatalf("ListEntries: %v", err)
	}
	if events, err := s.EntryEventsSince(c, 0); err != nil || len(events) != 0 || rev != 0 {
		t.Errorf("failed deletes left events %v (err %v) or revision %d", events, err, rev)
	}
}

func testBulkDuplicates(t *testing.T, s datastore.Store) {
	c := ctx(t)
	existing := createOne(t, s, entry("/web", "unix:uid:1", "unix:gid:2"))

	otherParent := entry("/web", "unix:uid:1", "unix:gid:2")
	otherParent.ParentID = id("/agent/2")
	batch := []struct {
		name string
		e    registration.Entry
		dup  bool
	}{
		{"same selectors, other order", entry("/web", "unix:gid:2", "unix:uid:1"), true},
		{"subset of selectors", entry("/web", "unix:uid:1"), false},
		{"other parent", otherParent, false},
		{"new entry", entry("/db", "k8s:ns:a"), false},
		{"duplicate inside the batch", entry("/db", "k8s:ns:a"), true},
		{"repeated selector", entry("/web", "unix:gid:2", "unix:uid:1", "unix:uid:1"), true},
		{"other SPIFFE ID", entry("/web2", "unix:uid:1", "unix:gid:2"), false},
	}
	var entries []registration.Entry
	for _, b := range batch {
		entries = append(entries, b.e)
	}
	res, err := s.CreateEntries(c, entries)
	if err != nil {
		t.Fatalf("CreateEntries: %v", err)
	}
	if len(res) != len(batch) {
		t.Fatalf("CreateEntries returned %d results, want %d", len(res), len(batch))
	}
	last := existing.Revision
	created := 0
	for i, b := range batch {
		r := res[i]
		if b.dup {
			if !errors.Is(r.Err, datastore.ErrAlreadyExists) {
				t.Errorf("%s: err = %v, want ErrAlreadyExists", b.name, r.Err)
			}
			continue
		}
		if r.Err != nil {
			t.Errorf("%s: err = %v, want nil", b.name, r.Err)
			continue
		}
		created++
		if r.Entry.ID == "" || r.Entry.Revision <= last {
			t.Errorf("%s: ID %q revision %d, want an ID and a revision > %d", b.name, r.Entry.ID, r.Entry.Revision, last)
		}
		last = r.Entry.Revision
	}
	list, rev, err := s.ListEntries(c)
	if err != nil {
		t.Fatalf("ListEntries: %v", err)
	}
	if len(list) != 1+created {
		t.Errorf("ListEntries returned %d entries, want %d (duplicates must be skipped)", len(list), 1+created)
	}
	if rev != last {
		t.Errorf("ListEntries revision = %d, want %d", rev, last)
	}
	events, err := s.EntryEventsSince(c, existing.Revision)
	if err != nil {
		t.Fatalf("EntryEventsSince: %v", err)
	}
	if len(events) != created {
		t.Errorf("%d events after the batch, want %d (none for duplicates)", len(events), created)
	}
}

func testBulkRollback(t *testing.T, s datastore.Store) {
	first := createOne(t, s, entry("/first", "unix:uid:1"))
	noParent := entry("/bad", "unix:uid:1")
	noParent.ParentID = spiffeid.ID{}
	tests := []struct {
		name  string
		batch []registration.Entry
	}{
		{"empty SPIFFE ID", []registration.Entry{entry("/ok1", "unix:uid:1"), {ParentID: id("/agent/1")}, entry("/ok2", "unix:uid:1")}},
		{"empty parent ID", []registration.Entry{entry("/ok1", "unix:uid:1"), entry("/ok2", "unix:uid:1"), noParent}},
		{"duplicate and failure", []registration.Entry{entry("/first", "unix:uid:1"), entry("/ok1", "unix:uid:1"), {}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ctx(t)
			res, err := s.CreateEntries(c, tt.batch)
			if err == nil {
				t.Fatalf("CreateEntries succeeded (%v), want an error", res)
			}
			list, rev, err := s.ListEntries(c)
			if err != nil {
				t.Fatalf("ListEntries: %v", err)
			}
			if len(list) != 1 || rev != first.Revision {
				t.Errorf("after a failed batch: %d entries at revision %d, want 1 at %d", len(list), rev, first.Revision)
			}
			if events, err := s.EntryEventsSince(c, first.Revision); err != nil || len(events) != 0 {
				t.Errorf("after a failed batch: events %v (err %v), want none", events, err)
			}
		})
	}
}

func testBulkEmpty(t *testing.T, s datastore.Store) {
	c := ctx(t)
	res, err := s.CreateEntries(c, nil)
	if err != nil || len(res) != 0 {
		t.Errorf("CreateEntries(nil) = %v, %v; want no results, no error", res, err)
	}
	if _, rev, err := s.ListEntries(c); err != nil || rev != 0 {
		t.Errorf("revision after an empty batch = %d (err %v), want 0", rev, err)
	}
}

func testBulkCanceledContext(t *testing.T, s datastore.Store) {
	canceled, cancel := context.WithCancel(ctx(t))
	cancel()
	if _, err := s.CreateEntries(canceled, []registration.Entry{entry("/x", "unix:uid:1")}); err == nil {
		t.Error("CreateEntries with a canceled context succeeded")
	}
	if list, _, err := s.ListEntries(ctx(t)); err != nil || len(list) != 0 {
		t.Errorf("after a canceled batch: %d entries (err %v), want 0", len(list), err)
	}
}

func testConcurrentEntryWriters(t *testing.T, s datastore.Store) {
	const writers, each = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				e := entry(fmt.Sprintf("/w%d/e%d", w, i), "unix:uid:1")
				res, err := s.CreateEntries(ctx(t), []registration.Entry{e})
				if err == nil {
					err = res[0].Err
				}
				if err == nil && i%3 == 0 {
					_, err = s.DeleteEntry(ctx(t), res[0].Entry.ID)
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent write failed: %v", err)
	}
	list, rev, err := s.ListEntries(ctx(t))
	if err != nil {
		t.Fatalf("ListEntries: %v", err)
	}
	deletes := writers * ((each + 2) / 3)
	if len(list) != writers*each-deletes {
		t.Errorf("ListEntries returned %d entries, want %d", len(list), writers*each-deletes)
	}
	events, err := s.EntryEventsSince(ctx(t), 0)
	if err != nil {
		t.Fatalf("EntryEventsSince: %v", err)
	}
	if len(events) != writers*each+deletes {
		t.Errorf("%d events, want %d", len(events), writers*each+deletes)
	}
	if n := len(events); n > 0 && events[n-1].Revision != rev {
		t.Errorf("last event revision %d, ListEntries revision %d", events[n-1].Revision, rev)
	}
}

// testListSnapshot checks that ListEntries is a consistent snapshot while
// writers run: it holds exactly the entries whose create events are at or
// below the revision it reports. A backend whose revisions can commit out
// of order fails this, and so would its watchers.
func testListSnapshot(t *testing.T, s datastore.Store) {
	type snapshot struct {
		ids map[string]bool
		rev int64
	}
	const writers, each = 4, 15
	var (
		wg, readers sync.WaitGroup
		mu          sync.Mutex
		snaps       []snapshot
		done        = make(chan struct{})
	)
	for range 2 {
		readers.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				list, rev, err := s.ListEntries(ctx(t))
				if err != nil {
					t.Errorf("ListEntries: %v", err)
					return
				}
				ids := make(map[string]bool, len(list))
				for _, e := range list {
					ids[e.ID] = true
					if e.Revision > rev {
						t.Errorf("entry %s at revision %d in a list at revision %d", e.ID, e.Revision, rev)
					}
				}
				mu.Lock()
				snaps = append(snaps, snapshot{ids, rev})
				mu.Unlock()
				time.Sleep(2 * time.Millisecond) // let the writers run on small machines
			}
		})
	}
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if _, err := s.CreateEntries(ctx(t), []registration.Entry{entry(fmt.Sprintf("/s%d/%d", w, i), "unix:uid:1")}); err != nil {
					t.Errorf("CreateEntries: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(done)
	readers.Wait()

	events, err := s.EntryEventsSince(ctx(t), 0)
	if err != nil {
		t.Fatalf("EntryEventsSince: %v", err)
	}
	for _, sn := range snaps {
		want := 0
		for _, ev := range events {
			if ev.Revision > sn.rev {
				break
			}
			want++
			if !sn.ids[ev.EntryID] {
				t.Fatalf("list at revision %d lacks entry %s created at revision %d", sn.rev, ev.EntryID, ev.Revision)
			}
		}
		if len(sn.ids) != want {
			t.Fatalf("list at revision %d has %d entries, want %d", sn.rev, len(sn.ids), want)
		}
	}
	if len(snaps) == 0 {
		t.Fatal("no snapshots taken")
	}
}
