package sqlstore

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hallmarkid/hallmark/server/datastore"
)

// Querier runs statements: a connection pool, a connection or a
// transaction. Queries use $1-style placeholders; a Row's Scan of no row
// fails with an error matching sql.ErrNoRows (pgx.ErrNoRows does).
type Querier interface {
	// Exec runs a statement and returns the number of rows it changed
	// (or, for a SELECT, returned).
	Exec(ctx context.Context, query string, args ...any) (rowsAffected int64, err error)
	QueryRow(ctx context.Context, query string, args ...any) Row
	Query(ctx context.Context, query string, args ...any) (Rows, error)
}

// Row is the result of QueryRow.
type Row interface {
	Scan(dest ...any) error
}

// Rows is the result of Query.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// Backend is what a backend provides the shared queries with: its
// connections, and the two steps of an entry change it does its own way.
type Backend interface {
	// Write runs fn in one write transaction and commits it; fn's error
	// rolls it back and is returned as it is. Errors of the transaction
	// itself name op.
	Write(ctx context.Context, op string, fn func(q Querier) error) error
	// WriteEach runs fn, whose statements are each atomic on their own:
	// outside a transaction where the database allows it (PostgreSQL), in
	// a write transaction where writes need one (SQLite).
	WriteEach(ctx context.Context, op string, fn func(q Querier) error) error
	// Read runs fn in a read-only transaction: every query in fn sees one
	// snapshot.
	Read(ctx context.Context, op string, fn func(q Querier) error) error
	// Reader runs single-statement reads.
	Reader() Querier

	// InsertEntries inserts rows (their IDs set) in write transaction q,
	// in order, at revisions rev+1, rev+2, ... as they go in. A row whose
	// ID or (SPIFFE ID, parent ID, selectors key) is stored already, or
	// taken by an earlier row, is skipped. It returns each row's revision,
	// 0 for a skipped row.
	InsertEntries(ctx context.Context, q Querier, rows []EntryRow, rev, createdAtNanos int64) ([]int64, error)
	// CommitRevision ends an entry change in write transaction q: it
	// records ev (nil after inserts: a trigger recorded theirs), stores
	// rev as the current revision and announces it where the backend
	// announces changes.
	CommitRevision(ctx context.Context, q Querier, rev int64, ev *datastore.EntryEvent) error
}

// Dialect holds the SQL that differs between the backends, and how they
// store what they store differently.
type Dialect struct {
	// Name prefixes every error: "sqlite", "postgres".
	Name string
	// Product names the database in messages: "SQLite", "PostgreSQL".
	Product string
	// Greatest is the SQL function returning the larger of two values:
	// "max" (SQLite), "GREATEST" (PostgreSQL).
	Greatest string
	// ByteOrder follows ORDER BY id to order byte-wise whatever the
	// database's collation: "" (SQLite's default is byte-wise),
	// ` COLLATE "C"` (PostgreSQL).
	ByteOrder string
	// TextArrays: an entry's selectors ("type:value"), DNS names and
	// federated trust domains are text[] columns; otherwise JSON arrays in
	// text columns (selectors as {"type","value"} objects).
	TextArrays bool
	// NoNUL: text columns cannot hold NUL bytes. Such strings are refused
	// on write and found nowhere on lookup.
	NoNUL bool
	// LockRevision reads the revision counter (one row, one column) and,
	// where the write transaction does not already exclude other entry
	// writers, locks it until the transaction ends.
	LockRevision string
	// BanAgent ($1 ID, $2 now) and DeleteAgent ($1 ID) change one agent;
	// their row count is the number of agents changed. They may announce
	// the eviction too.
	BanAgent, DeleteAgent string
	// EventsHorizon, if set, reads the revision up to which entry events
	// may have been pruned; EntryEventsSince refuses to answer below it.
	EventsHorizon string
	// NotifyKV, if set, is an SQL expression over the column key that
	// announces a KV write (PostgreSQL: a pg_notify). PutKV and SwapKV
	// then run as one statement, WITH w AS (<write> RETURNING key) SELECT
	// <NotifyKV> FROM w, so that a write is announced if and only if it
	// stored a row, when it commits.
	NotifyKV string
}

// Core implements the datastore operations the backends share; a backend
// embeds it.
type Core struct {
	d   *Dialect
	b   Backend
	now func() time.Time
	q   queries

	// observe, when set, receives every operation's duration.
	observe atomic.Pointer[func(op string, took time.Duration)]
}

var _ datastore.OpObserver = (*Core)(nil)

// New returns a Core running d's SQL on b. now is the clock of created and
// updated times (time.Now when nil).
func New(d *Dialect, b Backend, now func() time.Time) *Core {
	if now == nil {
		now = time.Now
	}
	return &Core{d: d, b: b, now: now, q: buildQueries(d)}
}

// ObserveOps makes every later operation report its duration to fn.
func (c *Core) ObserveOps(fn func(op string, took time.Duration)) { c.observe.Store(&fn) }

// Timed starts timing op: defer c.Timed("list_entries")().
func (c *Core) Timed(op string) func() {
	fn := c.observe.Load()
	if fn == nil {
		return func() {}
	}
	start := time.Now()
	return func() { (*fn)(op, time.Since(start)) }
}

// errorf returns an error prefixed with the backend's name.
func (c *Core) errorf(format string, args ...any) error {
	return fmt.Errorf("%s: %w", c.d.Name, fmt.Errorf(format, args...))
}
