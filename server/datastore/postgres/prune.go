package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hallmarkid/hallmark/server/datastore/sqlstore"
)

// EntryEventsHorizon returns the revision up to which entry events may
// have been pruned: EntryEventsSince(rev) is complete for every rev at or
// above it, and fails with datastore.ErrEventsPruned below it.
func (s *Store) EntryEventsHorizon(ctx context.Context) (int64, error) {
	defer s.Timed("entry_events_horizon")()
	var pruned int64
	if err := s.pool.QueryRow(ctx, dialect.EventsHorizon).Scan(&pruned); err != nil {
		return 0, fmt.Errorf("postgres: entry events horizon: %w", err)
	}
	return pruned, nil
}

// PruneEntryEvents deletes entry events recorded (by the database's clock)
// before the given time, but never any of the newest keep events, and
// returns the new horizon (see EntryEventsHorizon). Open runs it hourly
// with EventRetention and EventKeep; concurrent calls from several servers
// are harmless.
func (s *Store) PruneEntryEvents(ctx context.Context, before time.Time, keep int64) (int64, error) {
	defer s.Timed("prune_entry_events")()
	if keep < 0 {
		keep = 0
	}
	var horizon int64
	err := backend{s}.Write(ctx, "prune entry events", func(qr sqlstore.Querier) error {
		h, err := pruneEntryEvents(ctx, qr.(txQ).tx, before, keep)
		if err != nil {
			return fmt.Errorf("postgres: prune entry events: %w", err)
		}
		horizon = h
		return nil
	})
	if err != nil {
		return 0, err
	}
	return horizon, nil
}

func pruneEntryEvents(ctx context.Context, tx pgx.Tx, before time.Time, keep int64) (int64, error) {
	var cut, horizon int64
	if err := tx.QueryRow(ctx, `SELECT LEAST(
			(SELECT coalesce(max(revision), 0) FROM entry_events WHERE created_at < $1),
			(SELECT value FROM revision WHERE id = 1) - $2)`, before, keep).Scan(&cut); err != nil {
		return 0, err
	}
	if err := tx.QueryRow(ctx, `UPDATE entry_events_pruned SET revision = GREATEST(revision, $1) WHERE id = 1
			RETURNING revision`, cut).Scan(&horizon); err != nil {
		return 0, err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM entry_events WHERE revision <= $1`, horizon); err != nil {
		return 0, err
	}
	return horizon, nil
}
