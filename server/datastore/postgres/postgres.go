package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hallmarkid/hallmark/server/datastore"
	"github.com/hallmarkid/hallmark/server/datastore/sqlstore"
)

// NotifyChannel is the PostgreSQL notification channel on which every
// committed entry change is announced, with the new revision as payload.
const NotifyChannel = "hallmark_entries"

// KVChannel is the notification channel on which each KV write (PutKV,
// and SwapKV when it swaps) is announced on commit; the payload is "=" and
// the key, or "*" for a key too long to announce (see WatchKV).
const KVChannel = "hallmark_kv"

// EvictChannel is the notification channel on which each agent eviction is
// announced (payload: the agent's SPIFFE ID), on commit.
const EvictChannel = "hallmark_agent_evictions"

// Entry events are kept for EventRetention, and the newest EventKeep
// events are kept whatever their age. Every server prunes once an hour.
const (
	EventRetention = 24 * time.Hour
	EventKeep      = 10_000
	pruneInterval  = time.Hour
)

// defaultAppName is the application_name servers show in pg_stat_activity
// unless the connection string sets one.
const defaultAppName = "hallmark-server"

// core is sqlstore.Core under an unexported name: Store gets its methods,
// not a Core field.
type core = sqlstore.Core

// Store is a PostgreSQL datastore. It is safe for concurrent use, and
// several Stores (in several server processes) may share one database.
type Store struct {
	*core

	pool   *pgxpool.Pool
	listen *pgx.ConnConfig // for the LISTEN connection of WatchEntryChanges
	log    *slog.Logger

	// ctx is canceled by Close: it stops the pruner and every watcher.
	ctx    context.Context
	cancel context.CancelFunc
	bg     sync.WaitGroup

	closeOnce sync.Once
}

var (
	_ datastore.Store          = (*Store)(nil)
	_ datastore.ChangeNotifier = (*Store)(nil)
	_ datastore.KVNotifier     = (*Store)(nil)
	_ datastore.OpObserver     = (*Store)(nil)
)

// Open connects to the database named by connString, brings its schema up
// to date and starts pruning old entry events in the background. log may
// be nil.
//
// connString is a libpq-style URL or key/value string as pgx accepts it,
// e.g. "postgres://hallmark:secret@db.internal:5432/hallmark?sslmode=verify-full",
// including pgxpool's pool_max_conns and friends. The role needs CREATE on
// the schema the tables go in (the first one in its search_path) the first
// time, and read/write on them after that. A database whose schema is newer
// than this code is refused.
func Open(ctx context.Context, connString string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if connString == "" {
		return nil, errors.New("postgres: open: connection string is empty")
	}
	cfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = defaultAppName
	}
	listen := cfg.ConnConfig.Copy()
	listen.RuntimeParams["application_name"] = cfg.ConnConfig.RuntimeParams["application_name"] + " (listen)"

	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: open: connect to %s/%s: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Database, err)
	}
	version, err := migrate(ctx, conn.Conn())
	conn.Release()
	if err != nil {
		pool.Close()
		return nil, err
	}

	s := &Store{pool: pool, listen: listen, log: log}
	s.core = sqlstore.New(&dialect, backend{s}, nil)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.bg.Go(s.pruneLoop)
	log.Info("postgres: datastore opened", "host", cfg.ConnConfig.Host, "database", cfg.ConnConfig.Database,
		"schema_version", version)
	return s, nil
}

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error {
	defer s.Timed("ping")()
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: ping: %w", err)
	}
	return nil
}

// Close stops the background pruner and every WatchEntryChanges, and
// closes the connections. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		s.bg.Wait()
		s.pool.Close()
	})
	return nil
}

// pruneLoop prunes old entry events once an hour until Close. The first
// run is a minute or two after Open, spread so that servers started
// together do not all prune at once.
func (s *Store) pruneLoop() {
	t := time.NewTimer(time.Minute + rand.N(time.Minute))
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
		horizon, err := s.PruneEntryEvents(ctx, time.Now().Add(-EventRetention), EventKeep)
		cancel()
		if err != nil && s.ctx.Err() == nil {
			s.log.Warn("postgres: pruning entry events failed", "error", err)
		} else if err == nil {
			s.log.Debug("postgres: pruned entry events", "horizon", horizon)
		}
		t.Reset(pruneInterval)
	}
}
