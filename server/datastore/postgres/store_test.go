package postgres_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/internal/pgtest"
	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/datastore"
	"github.com/hallmarkid/hallmark/server/datastore/postgres"
)

func createOne(t testing.TB, s *postgres.Store, e registration.Entry) registration.Entry {
	t.Helper()
	res, err := s.CreateEntries(context.Background(), []registration.Entry{e})
	if err != nil || res[0].Err != nil {
		t.Fatalf("CreateEntries: %v / %v", err, res)
	}
	return res[0].Entry
}

func TestPruneEntryEvents(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	var ids []string
	for _, p := range []string{"/1", "/2", "/3", "/4", "/5"} {
		ids = append(ids, createOne(t, s, entry(p)).ID)
	}
	if _, err := s.DeleteEntry(ctx, ids[0]); err != nil { // revision 6
		t.Fatal(err)
	}

	tests := []struct {
		name        string
		before      time.Time
		keep        int64
		wantHorizon int64
	}{
		{"nothing old enough", time.Now().Add(-time.Hour), 0, 0},
		{"keep the newest 4", time.Now().Add(time.Hour), 4, 2},
		{"a smaller cut never moves the horizon back", time.Now().Add(time.Hour), 5, 2},
		{"keep 1", time.Now().Add(time.Hour), 1, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := s.PruneEntryEvents(ctx, tt.before, tt.keep)
			if err != nil {
				t.Fatalf("PruneEntryEvents: %v", err)
			}
			if h != tt.wantHorizon {
				t.Errorf("horizon = %d, want %d", h, tt.wantHorizon)
			}
			if got, err := s.EntryEventsHorizon(ctx); err != nil || got != h {
				t.Errorf("EntryEventsHorizon = %d (err %v), want %d", got, err, h)
			}
			events, err := s.EntryEventsSince(ctx, h)
			if err != nil {
				t.Fatalf("EntryEventsSince(horizon): %v", err)
			}
			if len(events) != int(6-h) || events[len(events)-1].Revision != 6 {
				t.Errorf("EntryEventsSince(%d) = %v, want revisions %d..6", h, events, h+1)
			}
			if h > 0 {
				_, err := s.EntryEventsSince(ctx, h-1)
				if !errors.Is(err, datastore.ErrEventsPruned) {
					t.Errorf("EntryEventsSince(%d) below the horizon: err = %v, want ErrEventsPruned", h-1, err)
				}
			}
		})
	}
	// Pruning forgets events, never entries.
	list, rev, err := s.ListEntries(ctx)
	if err != nil || len(list) != 4 || rev != 6 {
		t.Errorf("after pruning: %d entries at revision %d (err %v), want 4 at 6", len(list), rev, err)
	}
}

func TestRefuseNewerSchema(t *testing.T) {
	conn := pgtest.Start(t)
	s := openConn(t, conn)
	s.Close()
	raw := rawConn(t, conn)
	future := postgres.SchemaVersion + 1
	if _, err := raw.Exec(t.Context(), "UPDATE schema_version SET version = $1", future); err != nil {
		t.Fatal(err)
	}
	_, err := postgres.Open(t.Context(), conn, nil)
	if err == nil || !strings.Contains(err.Error(), "newer than this binary") {
		t.Fatalf("Open of a future schema: err = %v, want a refusal", err)
	}
	var v int
	if err := raw.QueryRow(t.Context(), "SELECT version FROM schema_version").Scan(&v); err != nil || v != future {
		t.Errorf("refused open changed schema_version to %d (err %v)", v, err)
	}
}

func TestOpenErrors(t *testing.T) {
	good := pgtest.Start(t)
	tests := []struct {
		name    string
		conn    string
		wantErr string
	}{
		{"empty", "", "connection string is empty"},
		{"not a connection string", "postgres://[::1", "postgres: open"},
		{"nothing listening", "postgres://u:secret-pw@127.0.0.1:1/db?connect_timeout=2&sslmode=disable", "postgres: open: connect"},
	}
	// The local cluster checks passwords (scram-sha-256 on 127.0.0.1); a
	// server named by pgtest.EnvServer might not.
	if wrong := strings.Replace(good, ":"+pgtest.Role+"@", ":not-the-password@", 1); wrong != good && os.Getenv(pgtest.EnvServer) == "" {
		tests = append(tests, struct {
			name    string
			conn    string
			wantErr string
		}{"wrong password", wrong, "password authentication failed"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			s, err := postgres.Open(ctx, tt.conn, nil)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
			for _, secret := range []string{"secret-pw", "not-the-password"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error reveals the password: %v", err)
				}
			}
		})
	}
}

func TestRejectedInput(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	mod := func(f func(e *registration.Entry)) registration.Entry {
		e := entry("/x")
		f(&e)
		return e
	}
	entryTests := []struct {
		name    string
		e       registration.Entry
		wantErr string
	}{
		{"invalid UTF-8 selector", mod(func(e *registration.Entry) { e.Selectors[0].Value = "uid:\xff" }), "UTF-8"},
		{"invalid UTF-8 hint", mod(func(e *registration.Entry) { e.Hint = "a\xc3" }), "UTF-8"},
		{"NUL in hint", mod(func(e *registration.Entry) { e.Hint = "a\x00b" }), "NUL"},
		{"invalid UTF-8 DNS name", mod(func(e *registration.Entry) { e.DNSNames = []string{"\xfe.example"} }), "UTF-8"},
		{"NUL in DNS name", mod(func(e *registration.Entry) { e.DNSNames = []string{"a\x00.example"} }), "NUL"},
		{"control character in selector", mod(func(e *registration.Entry) { e.Selectors[0].Value = "a\nunix:b" }), "control character"},
		{"ID with a space", mod(func(e *registration.Entry) { e.ID = "a b" }), "entry ID"},
		{"long ID", mod(func(e *registration.Entry) { e.ID = strings.Repeat("a", 256) }), "entry ID"},
		{"negative TTL", mod(func(e *registration.Entry) { e.JWTSVIDTTL = -1 }), "negative TTL"},
		{"empty federated trust domain", mod(func(e *registration.Entry) { e.FederatesWith = []spiffeid.TrustDomain{{}} }), "trust domain"},
	}
	for _, tt := range entryTests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.CreateEntries(ctx, []registration.Entry{entry("/ok"), tt.e})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "postgres: ") {
				t.Errorf("err %q lacks the package prefix", err)
			}
		})
	}
	if list, _, err := s.ListEntries(ctx); err != nil || len(list) != 0 {
		t.Errorf("rejected batches left %d entries (err %v)", len(list), err)
	}

	otherTests := []struct {
		name    string
		call    func() error
		wantErr string
	}{
		{"agent without ID", func() error { return s.CreateAgent(ctx, datastore.Agent{}) }, "agent ID is empty"},
		{"agent expiry out of range", func() error {
			return s.CreateAgent(ctx, datastore.Agent{ID: "a", ExpiresAt: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)})
		}, "out of range"},
		{"NUL in agent serial", func() error {
			return s.CreateAgent(ctx, datastore.Agent{ID: "a", SerialNumber: "1\x00"})
		}, "NUL"},
		{"empty join token", func() error {
			return s.CreateJoinToken(ctx, datastore.JoinToken{ExpiresAt: time.Now()})
		}, "token is empty"},
		{"join token without expiry", func() error { return s.CreateJoinToken(ctx, datastore.JoinToken{Token: "t"}) }, "expiry is required"},
		{"KV key not UTF-8", func() error { return s.PutKV(ctx, "\xff", nil) }, "UTF-8"},
		{"KV key with NUL", func() error { return s.PutKV(ctx, "a\x00", nil) }, "NUL"},
	}
	for _, tt := range otherTests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}

	// Lookups of keys that cannot be stored find nothing; they do not fail.
	notFound := []struct {
		name string
		call func() error
	}{
		{"GetEntry", func() error { _, err := s.GetEntry(ctx, "\xff\x00"); return err }},
		{"DeleteEntry", func() error { _, err := s.DeleteEntry(ctx, "\xff"); return err }},
		{"GetAgent", func() error { _, err := s.GetAgent(ctx, "a\x00"); return err }},
		{"DeleteAgent", func() error { return s.DeleteAgent(ctx, "\xfe") }},
		{"GetKV", func() error { _, err := s.GetKV(ctx, "k\x00"); return err }},
	}
	for _, tt := range notFound {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, datastore.ErrNotFound) {
				t.Errorf("err = %v, want ErrNotFound", err)
			}
		})
	}
}

// TestBulkCopyPath: a large batch mixing new entries, duplicates of stored
// ones, duplicates inside the batch and a taken ID keeps the per-entry
// semantics.
func TestBulkCopyPath(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	stored := createOne(t, s, entry("/stored"))
	var batch []registration.Entry
	want := map[int]bool{} // index -> created
	for i := range 500 {
		var e registration.Entry
		switch {
		case i%50 == 7:
			e = entry("/stored") // similar to a stored entry
		case i%50 == 9:
			e = entry("/new/" + string(rune('a'+i%26)))
			e.ID = stored.ID // taken ID
		case i%50 == 11 && i > 50:
			e = batch[i-50] // similar to an earlier one in this batch
		default:
			e = entry("/new/" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + "/" + strconv.Itoa(i))
		}
		created := !(i%50 == 7 || i%50 == 9 || (i%50 == 11 && i > 50))
		want[i] = created
		batch = append(batch, e)
	}
	res, err := s.CreateEntries(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	rev := stored.Revision
	n := 0
	for i, r := range res {
		if want[i] != (r.Err == nil) {
			t.Fatalf("entry %d: err %v, want created=%v", i, r.Err, want[i])
		}
		if r.Err != nil {
			if !errors.Is(r.Err, datastore.ErrAlreadyExists) {
				t.Fatalf("entry %d: err %v, want ErrAlreadyExists", i, r.Err)
			}
			continue
		}
		n++
		if r.Entry.Revision != rev+1 {
			t.Fatalf("entry %d: revision %d, want %d (gap-free, in slice order)", i, r.Entry.Revision, rev+1)
		}
		rev = r.Entry.Revision
	}
	list, listRev, err := s.ListEntries(ctx)
	if err != nil || len(list) != n+1 || listRev != rev {
		t.Fatalf("ListEntries: %d entries at %d (err %v), want %d at %d", len(list), listRev, err, n+1, rev)
	}
	events, err := s.EntryEventsSince(ctx, stored.Revision)
	if err != nil || len(events) != n {
		t.Fatalf("%d events (err %v), want %d", len(events), err, n)
	}
	for i, e := range list[1:] {
		if e.ID != events[i].EntryID || e.Revision != events[i].Revision {
			t.Fatalf("entry %d (%s at %d) does not match its event %+v", i, e.ID, e.Revision, events[i])
		}
	}
}

// FuzzEntryRoundTrip: whatever the store accepts comes back exactly.
func FuzzEntryRoundTrip(f *testing.F) {
	f.Add("uid:1000", "hint", "web.example.org", "/web")
	f.Add("path:/usr/bin/wéb ✓ \"q\" <a>&", "\x00nul\tand\ttabs", "*.x", "/a/b")
	f.Add("\u2028\u2029", "\xff", "", "/c")
	f.Add(`\u0000`, `{"json":[1]}`, "{a,b}", "/d")
	f.Add(`"quoted",comma`, `NULL`, `{}`, "/e")
	s := openStore(f)
	f.Fuzz(func(t *testing.T, value, hint, dns, path string) {
		id, err := spiffeid.FromPath(td, path)
		if err != nil {
			return
		}
		e := registration.Entry{
			SPIFFEID:  id,
			ParentID:  spiffeid.RequireFromPath(td, "/agent"),
			Selectors: []registration.Selector{{Type: "t", Value: value}, {Type: "u", Value: hint}},
			Hint:      hint,
			DNSNames:  []string{dns, value},
		}
		res, err := s.CreateEntries(context.Background(), []registration.Entry{e})
		if err != nil {
			return // refused as a whole: fine, as long as nothing was altered
		}
		if res[0].Err != nil {
			if !errors.Is(res[0].Err, datastore.ErrAlreadyExists) {
				t.Fatalf("entry error: %v", res[0].Err)
			}
			return
		}
		got, err := s.GetEntry(context.Background(), res[0].Entry.ID)
		if err != nil {
			t.Fatalf("GetEntry: %v", err)
		}
		if got.Hint != e.Hint || !slices.Equal(got.Selectors, e.Selectors) || !slices.Equal(got.DNSNames, e.DNSNames) || got.SPIFFEID != e.SPIFFEID {
			t.Fatalf("round trip changed the entry:\n got %#v\nwant %#v", got, e)
		}
		if _, err := s.DeleteEntry(context.Background(), got.ID); err != nil {
			t.Fatalf("DeleteEntry: %v", err)
		}
	})
}
