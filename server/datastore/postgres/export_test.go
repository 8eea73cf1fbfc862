package postgres

import (
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hallmarkid/hallmark/server/datastore/sqlstore"
)

// SetWatchIdle shortens the listener's idle check for a test and returns
// a function restoring it.
func SetWatchIdle(d time.Duration) (restore func()) {
	old := watchIdle
	watchIdle = d
	return func() { watchIdle = old }
}

// RawQuerier runs sqlstore queries on conn, for tests that bypass the
// Store.
func RawQuerier(conn *pgx.Conn) sqlstore.Querier { return q{conn} }
