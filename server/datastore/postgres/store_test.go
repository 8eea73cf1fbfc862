package postgres_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/internal/pgtest"
	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/datastore"
	"github.com/hallmarkid/hallmark/server/datastore/postgres"
)

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
