package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// watchIdle is how long the listener waits for a notification before it
// checks that its connection is still alive (a variable for tests).
var watchIdle = 30 * time.Second

// Timings of WatchEntryChanges.
const (
	// watchPing bounds the liveness check.
	watchPing = 5 * time.Second
	// Reconnection backoff doubles from watchBackoffMin up to
	// watchBackoffMax and starts again after a successful LISTEN.
	watchBackoffMin = 100 * time.Millisecond
	watchBackoffMax = 10 * time.Second
)

// WatchEntryChanges calls fn with a revision whenever an entry change was
// committed by this or another server sharing the database, and with 0
// after each (re)connection, meaning "you may have missed changes: catch
// up" (EntryEventsSince from the last revision you applied, or ListEntries
// if that fails with datastore.ErrEventsPruned). The first call is that 0.
//
// It runs LISTEN on a dedicated connection, outside the pool; when the
// connection fails, or stays silent for 30 s and then does not answer a
// ping, it reconnects with a backoff (100 ms doubling to 10 s). fn runs on
// the calling goroutine, one call at a time; a slow fn delays later
// calls, it never loses them. Revisions passed to fn increase, except that
// a notification sent before a reconnection may arrive after the 0.
//
// It returns nil when ctx is done or the Store is closed.
func (s *Store) WatchEntryChanges(ctx context.Context, fn func(rev int64)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel) // Close stops watchers too
	defer stop()

	backoff := watchBackoffMin
	for {
		err := s.listenOnce(ctx, fn, func() { backoff = watchBackoffMin })
		if ctx.Err() != nil {
			return nil
		}
		s.log.Warn("postgres: entry change listener disconnected; reconnecting", "error", err, "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, watchBackoffMax)
	}
}

// listenOnce connects, listens and delivers notifications until the
// connection fails or ctx is done. connected is called once LISTEN is in
// effect.
func (s *Store) listenOnce(ctx context.Context, fn func(rev int64), connected func()) error {
	conn, err := pgx.ConnectConfig(ctx, s.listen)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{NotifyChannel}.Sanitize()); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	connected()
	fn(0)
	for {
		wctx, cancel := context.WithTimeout(ctx, watchIdle)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			rev, perr := strconv.ParseInt(n.Payload, 10, 64)
			if perr != nil || rev < 0 {
				rev = 0 // not ours to interpret: catch up instead
			}
			fn(rev)
		case ctx.Err() != nil:
			return ctx.Err()
		case pgconn.Timeout(err) && !conn.IsClosed():
			// Quiet for a while: make sure the connection is still there
			// (a dead peer would otherwise leave us waiting forever).
			pctx, cancel := context.WithTimeout(ctx, watchPing)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				return fmt.Errorf("ping: %w", err)
			}
		default:
			if errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed() {
				continue
			}
			return fmt.Errorf("wait: %w", err)
		}
	}
}
