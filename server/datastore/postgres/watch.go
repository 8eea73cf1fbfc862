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
	return s.watch(ctx, NotifyChannel, "entry change", func(payload string) {
		if payload == "" {
			fn(0)
			return
		}
		rev, err := strconv.ParseInt(payload, 10, 64)
		if err != nil || rev < 0 {
			rev = 0 // not ours to interpret: catch up instead
		}
		fn(rev)
	})
}

// WatchAgentEvictions calls fn with the SPIFFE ID of every agent evicted by
// this or another server sharing the database, and with "" after each
// (re)connection ("you may have missed evictions"). Same connection
// handling as WatchEntryChanges, on its own connection.
func (s *Store) WatchAgentEvictions(ctx context.Context, fn func(agentID string)) error {
	return s.watch(ctx, EvictChannel, "agent eviction", fn)
}

// watch LISTENs on channel and calls fn with each payload, and with ""
// after each (re)connection, until ctx is done or the Store is closed.
func (s *Store) watch(ctx context.Context, channel, what string, fn func(payload string)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel) // Close stops watchers too
	defer stop()

	backoff := watchBackoffMin
	for {
		err := s.listenOnce(ctx, channel, fn, func() { backoff = watchBackoffMin })
		if ctx.Err() != nil {
			return nil
		}
		s.log.Warn("postgres: "+what+" listener disconnected; reconnecting", "error", err, "backoff", backoff)
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
func (s *Store) listenOnce(ctx context.Context, channel string, fn func(payload string), connected func()) error {
	conn, err := pgx.ConnectConfig(ctx, s.listen)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	connected()
	fn("")
	for {
		wctx, cancel := context.WithTimeout(ctx, watchIdle)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			if n.Payload != "" {
				fn(n.Payload)
			}
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
