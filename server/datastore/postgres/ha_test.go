package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hallmarkid/hallmark/internal/pgtest"
	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/datastore"
	"github.com/hallmarkid/hallmark/server/datastore/postgres"
)

// twoServers opens two Stores on one fresh database, as two servers would.
func twoServers(t *testing.T) (a, b *postgres.Store, connString string) {
	t.Helper()
	connString = pgtest.Start(t)
	return openConn(t, connString), openConn(t, connString), connString
}

// rawConn connects to the database directly, bypassing the Store.
func rawConn(t testing.TB, connString string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), connString)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// TestTwoServersSingleUse: join tokens and trust-on-first-use agent records
// stay single-use when the racing calls arrive at different servers.
func TestTwoServersSingleUse(t *testing.T) {
	a, b, _ := twoServers(t)
	stores := []*postgres.Store{a, b}
	ctx := t.Context()
	if err := a.CreateJoinToken(ctx, datastore.JoinToken{Token: "shared", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}

	t.Run("100 ConsumeJoinToken", func(t *testing.T) {
		var (
			wg   sync.WaitGroup
			wins atomic.Int32
		)
		start := make(chan struct{})
		for i := range 100 {
			s := stores[i%2]
			wg.Go(func() {
				<-start
				_, err := s.ConsumeJoinToken(ctx, "shared", time.Now())
				switch {
				case err == nil:
					wins.Add(1)
				case err != datastore.ErrNotFound: //nolint:errorlint // the very same value is the contract
					t.Errorf("ConsumeJoinToken: %v", err)
				}
			})
		}
		close(start)
		wg.Wait()
		if n := wins.Load(); n != 1 {
			t.Errorf("token consumed %d times across two servers, want exactly 1", n)
		}
	})

	t.Run("50 CreateAgent", func(t *testing.T) {
		var (
			wg     sync.WaitGroup
			mu     sync.Mutex
			winner []string
		)
		start := make(chan struct{})
		for i := range 50 {
			s := stores[i%2]
			wg.Go(func() {
				<-start
				serial := fmt.Sprint(i)
				err := s.CreateAgent(ctx, datastore.Agent{ID: "spiffe://example.org/agent/aws_iid/i-1", AttestationType: "aws_iid", SerialNumber: serial})
				switch {
				case err == nil:
					mu.Lock()
					winner = append(winner, serial)
					mu.Unlock()
				case !errors.Is(err, datastore.ErrAlreadyExists):
					t.Errorf("CreateAgent: %v", err)
				}
			})
		}
		close(start)
		wg.Wait()
		if len(winner) != 1 {
			t.Fatalf("agent created %d times across two servers, want exactly 1", len(winner))
		}
		got, err := b.GetAgent(ctx, "spiffe://example.org/agent/aws_iid/i-1")
		if err != nil || got.SerialNumber != winner[0] {
			t.Errorf("stored agent %+v (err %v), want the winner's serial %s", got, err, winner[0])
		}
	})

	t.Run("eviction is seen by the other server", func(t *testing.T) {
		id := "spiffe://example.org/agent/aws_iid/i-1"
		if err := a.DeleteAgent(ctx, id); err != nil {
			t.Fatal(err)
		}
		if _, err := b.GetAgent(ctx, id); !errors.Is(err, datastore.ErrNotFound) {
			t.Errorf("GetAgent on the other server after eviction: err = %v, want ErrNotFound", err)
		}
	})
}

// TestTwoServersRevisions: entry writes from both servers get one gap-free,
// increasing sequence of revisions.
func TestTwoServersRevisions(t *testing.T) {
	a, b, _ := twoServers(t)
	stores := []*postgres.Store{a, b}
	var wg sync.WaitGroup
	for i := range 40 {
		s := stores[i%2]
		wg.Go(func() {
			res, err := s.CreateEntries(t.Context(), []registration.Entry{entry(fmt.Sprintf("/two/%d", i))})
			if err != nil || res[0].Err != nil {
				t.Errorf("CreateEntries: %v %v", err, res)
				return
			}
			if i%4 == 0 {
				if _, err := s.DeleteEntry(t.Context(), res[0].Entry.ID); err != nil {
					t.Errorf("DeleteEntry: %v", err)
				}
			}
		})
	}
	wg.Wait()
	events, err := b.EntryEventsSince(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 50 {
		t.Errorf("%d events, want 50", len(events))
	}
	for i, ev := range events {
		if ev.Revision != int64(i+1) {
			t.Fatalf("event %d has revision %d: revisions must run 1, 2, 3... across both servers", i, ev.Revision)
		}
	}
	list, rev, err := a.ListEntries(t.Context())
	if err != nil || len(list) != 30 || rev != 50 {
		t.Errorf("ListEntries: %d entries at revision %d (err %v), want 30 at 50", len(list), rev, err)
	}
}

// TestConcurrentOpen: servers starting together on an empty database all
// come up; the schema is created once.
func TestConcurrentOpen(t *testing.T) {
	conn := pgtest.Start(t)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			s, err := postgres.Open(t.Context(), conn, nil)
			if err != nil {
				t.Errorf("Open: %v", err)
				return
			}
			if err := s.Ping(t.Context()); err != nil {
				t.Errorf("Ping: %v", err)
			}
			s.Close()
		})
	}
	wg.Wait()
	var v int
	if err := rawConn(t, conn).QueryRow(t.Context(), "SELECT version FROM schema_version").Scan(&v); err != nil || v != postgres.SchemaVersion {
		t.Errorf("schema_version = %d (err %v), want %d", v, err, postgres.SchemaVersion)
	}
}

// watcher collects what WatchEntryChanges reports.
type watcher struct {
	revs chan int64
	done chan error
}

func watch(t *testing.T, s *postgres.Store) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{revs: make(chan int64, 1024), done: make(chan error, 1)}
	go func() { w.done <- s.WatchEntryChanges(ctx, func(rev int64) { w.revs <- rev }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-w.done:
			if err != nil {
				t.Errorf("WatchEntryChanges returned %v, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("WatchEntryChanges did not return after its context ended")
		}
	})
	return w
}

// next returns the next reported revision.
func (w *watcher) next(t *testing.T) int64 {
	t.Helper()
	select {
	case rev := <-w.revs:
		return rev
	case <-time.After(10 * time.Second):
		t.Fatal("no change notification within 10 s")
		return 0
	}
}

// waitFor skips reports until one at or past rev.
func (w *watcher) waitFor(t *testing.T, rev int64) {
	t.Helper()
	for {
		if got := w.next(t); got >= rev {
			return
		}
	}
}

func TestWatchEntryChanges(t *testing.T) {
	a, b, _ := twoServers(t)
	ctx := t.Context()
	w := watch(t, b)
	if got := w.next(t); got != 0 {
		t.Fatalf("first report = %d, want 0 (catch up after connecting)", got)
	}

	res, err := a.CreateEntries(ctx, []registration.Entry{entry("/w/1"), entry("/w/2")})
	if err != nil {
		t.Fatal(err)
	}
	if got := w.next(t); got != res[1].Entry.Revision {
		t.Errorf("after a batch of two: report %d, want the batch's last revision %d", got, res[1].Entry.Revision)
	}
	// A failed batch and a duplicate-only batch change nothing: no report.
	if _, err := a.CreateEntries(ctx, []registration.Entry{entry("/w/3"), {}}); err == nil {
		t.Fatal("invalid batch accepted")
	}
	if res, err := a.CreateEntries(ctx, []registration.Entry{entry("/w/1")}); err != nil || res[0].Err == nil {
		t.Fatalf("duplicate batch: %v %v", res, err)
	}
	if _, err := b.DeleteEntry(ctx, "no-such-entry"); !errors.Is(err, datastore.ErrNotFound) {
		t.Fatal(err)
	}
	// A delete on the watching server itself is reported too.
	if _, err := b.DeleteEntry(ctx, res[0].Entry.ID); err != nil {
		t.Fatal(err)
	}
	if got := w.next(t); got != res[1].Entry.Revision+1 {
		t.Errorf("after a delete: report %d, want %d (nothing for the failed, duplicate and not-found writes)", got, res[1].Entry.Revision+1)
	}
}

// TestWatchCatchUpAfterDisconnect kills the listener's connection in the
// server (pg_terminate_backend), makes changes while it is down, and checks
// that the watcher reports 0 on reconnecting and that EntryEventsSince from
// the last revision it had brings every missed change.
func TestWatchCatchUpAfterDisconnect(t *testing.T) {
	a, b, connString := twoServers(t)
	ctx := t.Context()
	admin := rawConn(t, connString)
	w := watch(t, b)
	if got := w.next(t); got != 0 {
		t.Fatalf("first report = %d, want 0", got)
	}
	first, err := a.CreateEntries(ctx, []registration.Entry{entry("/before")})
	if err != nil {
		t.Fatal(err)
	}
	last := first[0].Entry.Revision
	w.waitFor(t, last)

	for round := range 3 {
		var killed int
		if err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = 'hallmark-server (listen)'`).Scan(&killed); err != nil {
			t.Fatal(err)
		}
		if killed != 1 {
			t.Fatalf("terminated %d listener connections, want 1", killed)
		}
		// Changes while the listener is away (it waits at least 100 ms
		// before reconnecting).
		var missed []string
		for i := range 3 {
			res, err := a.CreateEntries(ctx, []registration.Entry{entry(fmt.Sprintf("/missed/%d/%d", round, i))})
			if err != nil {
				t.Fatal(err)
			}
			missed = append(missed, res[0].Entry.ID)
		}
		// Reports of revisions committed before the kill may still arrive;
		// the 0 must come.
		for w.next(t) != 0 {
		}
		events, err := b.EntryEventsSince(ctx, last)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, ev := range events {
			seen[ev.EntryID] = true
			last = ev.Revision
		}
		for _, id := range missed {
			if !seen[id] {
				t.Errorf("round %d: entry %s created during the disconnection not caught up", round, id)
			}
		}
		// And the listener works again.
		res, err := a.CreateEntries(ctx, []registration.Entry{entry(fmt.Sprintf("/after/%d", round))})
		if err != nil {
			t.Fatal(err)
		}
		w.waitFor(t, res[0].Entry.Revision)
		last = res[0].Entry.Revision
	}
}

func TestWatchStopsOnClose(t *testing.T) {
	s, err := postgres.Open(t.Context(), pgtest.Start(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.WatchEntryChanges(context.Background(), func(int64) {}) }()
	time.Sleep(50 * time.Millisecond)
	s.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("WatchEntryChanges after Close: %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WatchEntryChanges still running after Close")
	}
}

// TestWatchIdleCheck: a quiet listener checks its connection and keeps
// it; it neither reconnects (no extra 0) nor misses what comes later.
func TestWatchIdleCheck(t *testing.T) {
	t.Cleanup(postgres.SetWatchIdle(20 * time.Millisecond)) // runs after the watcher stopped
	a, b, _ := twoServers(t)
	w := watch(t, b)
	if got := w.next(t); got != 0 {
		t.Fatalf("first report = %d, want 0", got)
	}
	select {
	case rev := <-w.revs:
		t.Fatalf("report %d while nothing changed (reconnected?)", rev)
	case <-time.After(300 * time.Millisecond): // 15 idle checks
	}
	e := createOne(t, a, entry("/late"))
	if got := w.next(t); got != e.Revision {
		t.Errorf("report %d, want %d", got, e.Revision)
	}
}

// TestWatchAgentEvictions: an eviction or a ban committed on server A is
// announced to a watcher on server B with the agent's ID; a failed eviction
// or ban (unknown agent) announces nothing; a reconnection is announced as "".
func TestWatchAgentEvictions(t *testing.T) {
	a, b, connString := twoServers(t)
	ctx, cancel := context.WithCancel(t.Context())
	ids := make(chan string, 16)
	done := make(chan error, 1)
	go func() { done <- b.WatchAgentEvictions(ctx, func(id string) { ids <- id }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("WatchAgentEvictions returned %v, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("WatchAgentEvictions did not return after its context ended")
		}
	})
	next := func() string {
		t.Helper()
		select {
		case id := <-ids:
			return id
		case <-time.After(10 * time.Second):
			t.Fatal("no eviction report within 10 s")
			return ""
		}
	}
	if got := next(); got != "" {
		t.Fatalf("first report = %q, want \"\" (connected)", got)
	}
	const id1, id2 = "spiffe://example.org/agent/join_token/one", "spiffe://example.org/agent/join_token/two"
	for _, id := range []string{id1, id2} {
		if err := a.CreateAgent(ctx, datastore.Agent{ID: id, AttestationType: "join_token", SerialNumber: "01"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.DeleteAgent(ctx, "spiffe://example.org/agent/join_token/nobody"); !errors.Is(err, datastore.ErrNotFound) {
		t.Fatalf("DeleteAgent(unknown) = %v, want ErrNotFound", err)
	}
	if err := a.DeleteAgent(ctx, id1); err != nil {
		t.Fatal(err)
	}
	if got := next(); got != id1 {
		t.Fatalf("report = %q, want %q (and nothing for the unknown agent)", got, id1)
	}
	// A ban is announced like an eviction; a failed one is not.
	const banned = "spiffe://example.org/agent/tpm/banned"
	if err := a.CreateAgent(ctx, datastore.Agent{ID: banned, AttestationType: "tpm", SerialNumber: "02"}); err != nil {
		t.Fatal(err)
	}
	if err := a.BanAgent(ctx, "spiffe://example.org/agent/tpm/nobody"); !errors.Is(err, datastore.ErrNotFound) {
		t.Fatalf("BanAgent(unknown) = %v, want ErrNotFound", err)
	}
	if err := a.BanAgent(ctx, banned); err != nil {
		t.Fatal(err)
	}
	if got := next(); got != banned {
		t.Fatalf("report = %q, want %q (banned)", got, banned)
	}
	// Kill the listener's connection: it reconnects and says "" first.
	admin := rawConn(t, connString)
	var killed int
	if err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = 'hallmark-server (listen)'`).Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("terminated %d listener connections (%v), want 1", killed, err)
	}
	if got := next(); got != "" {
		t.Fatalf("after a reconnection: report = %q, want \"\"", got)
	}
	if err := b.DeleteAgent(ctx, id2); err != nil {
		t.Fatal(err)
	}
	if got := next(); got != id2 {
		t.Fatalf("report = %q, want %q (evicted on the watching server)", got, id2)
	}
}
