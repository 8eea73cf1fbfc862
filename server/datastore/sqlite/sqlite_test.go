package sqlite_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/registration"

	"github.com/hallmarkid/hallmark/server/datastore"
	"github.com/hallmarkid/hallmark/server/datastore/datastoretest"
	"github.com/hallmarkid/hallmark/server/datastore/sqlite"
	"github.com/hallmarkid/hallmark/server/datastore/sqlstore/sqlstoretest"
)

// openStore opens a store in a fresh temporary directory and closes it
// when the test ends.
func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	return openPath(t, filepath.Join(t.TempDir(), "datastore.db"))
}

func openPath(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	return sqlstoretest.MustOpen(t, sqlite.Open, path)
}

func TestConformance(t *testing.T) {
	datastoretest.Run(t, func(t *testing.T) datastore.Store { return openStore(t) })
}

var entry = sqlstoretest.Entry

func TestReopenPersistence(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "ds.db")
	s, err := sqlite.Open(ctx, path, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	res, err := s.CreateEntries(ctx, []registration.Entry{entry("/a"), entry("/b")})
	if err != nil {
		t.Fatalf("CreateEntries: %v", err)
	}
	if _, err := s.DeleteEntry(ctx, res[0].Entry.ID); err != nil {
		t.Fatalf("DeleteEntry: %v", err)
	}
	agent := datastore.Agent{ID: "spiffe://example.org/agent/x", AttestationType: "tpm", ExpiresAt: time.Unix(2e9, 5)}
	if err := s.CreateAgent(ctx, agent); err != nil {
		t.Fatalf("CreateAgent: %v", err)
	}
	if err := s.CreateJoinToken(ctx, datastore.JoinToken{Token: "tok", ExpiresAt: time.Unix(2e9, 0)}); err != nil {
		t.Fatalf("CreateJoinToken: %v", err)
	}
	if err := s.PutKV(ctx, "k", []byte("v")); err != nil {
		t.Fatalf("PutKV: %v", err)
	}
	_, rev, err := s.ListEntries(ctx)
	if err != nil {
		t.Fatalf("ListEntries: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	s = openPath(t, path)
	list, rev2, err := s.ListEntries(ctx)
	if err != nil {
		t.Fatalf("ListEntries: %v", err)
	}
	if rev2 != rev || len(list) != 1 || list[0].ID != res[1].Entry.ID || !list[0].CreatedAt.Equal(res[1].Entry.CreatedAt) {
		t.Errorf("after reopen: %d entries at revision %d, want %s at %d", len(list), rev2, res[1].Entry.ID, rev)
	}
	if events, err := s.EntryEventsSince(ctx, 0); err != nil || len(events) != 3 {
		t.Errorf("after reopen: events %v (err %v), want 3", events, err)
	}
	if got, err := s.GetAgent(ctx, agent.ID); err != nil || !got.ExpiresAt.Equal(agent.ExpiresAt) {
		t.Errorf("after reopen: agent %+v (err %v)", got, err)
	}
	if v, err := s.GetKV(ctx, "k"); err != nil || string(v) != "v" {
		t.Errorf("after reopen: kv %q (err %v)", v, err)
	}
	if _, err := s.ConsumeJoinToken(ctx, "tok", time.Unix(1e9, 0)); err != nil {
		t.Errorf("after reopen: ConsumeJoinToken: %v", err)
	}
	// Revisions continue from where they were.
	c := sqlstoretest.CreateOne(t, s, entry("/c"))
	if c.Revision <= rev {
		t.Errorf("revision after reopen = %d, want > %d", c.Revision, rev)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, bytes.Repeat([]byte("not a database "), 512), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		wantErr string
	}{
		{"empty path", "", "want a file path"},
		{"memory", ":memory:", "want a file path"},
		{"URI", "file:x.db?mode=memory", "want a file path"},
		{"directory", dir, "database file"},
		{"not a database", garbage, "not a database"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := sqlite.Open(t.Context(), tt.path, nil)
			if err == nil {
				s.Close()
				t.Fatalf("Open(%q) succeeded", tt.path)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Open(%q): err = %v, want %q", tt.path, err, tt.wantErr)
			}
		})
	}
}

func TestPathWithURICharacters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "we?ird #dir%20", "ds&x=1.db")
	s := openPath(t, path)
	sqlstoretest.CreateOne(t, s, entry("/a"))
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database not at %q: %v", path, err)
	}
}

// TestFilePermissions runs with umask 0 so the modes come from Open, not
// from the environment.
func TestFilePermissions(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)

	dir := filepath.Join(t.TempDir(), "state", "hallmark")
	path := filepath.Join(dir, "ds.db")
	s := openPath(t, path)
	sqlstoretest.CreateOne(t, s, entry("/a"))
	for p, want := range map[string]os.FileMode{
		dir:               0o700,
		filepath.Dir(dir): 0o700,
		path:              0o600,
		path + "-wal":     0o600,
		path + "-shm":     0o600,
	} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("stat %s: %v", p, err)
			continue
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode %v, want %v", p, got, want)
		}
	}
}

func TestTightenExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ds.db")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	openPath(t, path)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("existing file mode %v after Open, want 0600", got)
	}
}

// TestTwoStoresOneFile: two Stores (as two server processes would) share
// one file; locking is SQLite's, and the guarantees still hold.
func TestTwoStoresOneFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ds.db")
	stores := []*sqlite.Store{openPath(t, path), openPath(t, path)}
	ctx := t.Context()
	exp := time.Now().Add(time.Hour)
	if err := stores[0].CreateJoinToken(ctx, datastore.JoinToken{Token: "shared", ExpiresAt: exp}); err != nil {
		t.Fatal(err)
	}
	var (
		wg                  sync.WaitGroup
		tokenWins, agentWin atomic.Int32
	)
	for i := range 100 {
		s := stores[i%2]
		wg.Go(func() {
			if _, err := s.ConsumeJoinToken(ctx, "shared", time.Now()); err == nil {
				tokenWins.Add(1)
			} else if err != datastore.ErrNotFound { //nolint:errorlint // exact value is the contract
				t.Errorf("ConsumeJoinToken: %v", err)
			}
			err := s.CreateAgent(ctx, datastore.Agent{ID: "spiffe://example.org/agent/tofu", AttestationType: "aws_iid"})
			if err == nil {
				agentWin.Add(1)
			} else if !errors.Is(err, datastore.ErrAlreadyExists) {
				t.Errorf("CreateAgent: %v", err)
			}
			if _, err := s.CreateEntries(ctx, []registration.Entry{entry(fmt.Sprintf("/two/%d", i))}); err != nil {
				t.Errorf("CreateEntries: %v", err)
			}
		})
	}
	wg.Wait()
	if tokenWins.Load() != 1 || agentWin.Load() != 1 {
		t.Errorf("token consumed %d times, agent created %d times; want 1 and 1", tokenWins.Load(), agentWin.Load())
	}
	events, err := stores[1].EntryEventsSince(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, ev := range events {
		if ev.Revision != int64(i+1) {
			t.Fatalf("event %d has revision %d: revisions must run 1, 2, 3... across both stores", i, ev.Revision)
		}
	}
	if len(events) != 100 {
		t.Errorf("%d events, want 100", len(events))
	}
}
