package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"

	"github.com/hallmarkid/hallmark/server/datastore"
	"github.com/hallmarkid/hallmark/server/datastore/sqlstore"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migrations are the embedded schema changes, versions 1..n in order.
var migrations = sqlstore.MustLoadMigrations("sqlite", migrationFS)

// SchemaVersion is the schema version this code writes and understands.
var SchemaVersion = len(migrations)

// dialect is how SQLite spells what differs. Every write holds the
// database's write lock (BEGIN IMMEDIATE), so reading the revision
// counter is enough to exclude other entry writers.
var dialect = sqlstore.Dialect{
	Name:         "sqlite",
	Product:      "SQLite",
	Greatest:     "max",
	LockRevision: `SELECT value FROM revision WHERE id = 1`,
	BanAgent:     `UPDATE agents SET banned = 1, updated_at = max($2, created_at) WHERE id = $1`,
	DeleteAgent:  `DELETE FROM agents WHERE id = $1`,
}

// migrate applies missing migrations, each in its own immediate
// transaction together with the schema_version update, and returns the
// resulting version. Concurrent openers (other processes) serialise on the
// write lock and re-read the version inside it.
func migrate(ctx context.Context, db *sql.DB) (int, error) {
	m := sqlstore.Migrator{
		Name:       "sqlite",
		Migrations: migrations,
		Begin: func(ctx context.Context) (sqlstore.Tx, error) {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return nil, err
			}
			return txQ{q: q{tx}, tx: tx}, nil
		},
		VersionTable: `CREATE TABLE IF NOT EXISTS schema_version (
		id      INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
		version INTEGER NOT NULL
	) STRICT`,
	}
	return m.Migrate(ctx)
}

// backend runs sqlstore's queries: writes in immediate transactions on
// the single write connection, reads on the query-only pool.
type backend struct{ s *Store }

// Write runs fn in an immediate write transaction and commits it.
func (b backend) Write(ctx context.Context, op string, fn func(q sqlstore.Querier) error) error {
	tx, err := b.s.writeDB.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: %s: begin: %w", op, err)
	}
	if err := fn(txQ{q: q{tx}, tx: tx}); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: %s: commit: %w", op, err)
	}
	return nil
}

// WriteEach is Write: a write needs the write lock of a transaction.
func (b backend) WriteEach(ctx context.Context, op string, fn func(q sqlstore.Querier) error) error {
	return b.Write(ctx, op, fn)
}

// Read runs fn in a read transaction: every query in fn sees one snapshot.
func (b backend) Read(ctx context.Context, op string, fn func(q sqlstore.Querier) error) error {
	tx, err := b.s.readDB.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("sqlite: %s: begin: %w", op, err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only; nothing to undo
	return fn(q{tx})
}

func (b backend) Reader() sqlstore.Querier { return q{b.s.readDB} }

// InsertEntries inserts the rows one by one with a prepared statement;
// the unique indexes skip (ON CONFLICT DO NOTHING) rows whose ID or
// similarity key is taken, and a trigger records each insert's event.
func (b backend) InsertEntries(ctx context.Context, qr sqlstore.Querier, rows []sqlstore.EntryRow, rev, createdNanos int64) ([]int64, error) {
	tx := qr.(txQ).tx
	ins, err := tx.PrepareContext(ctx, `INSERT INTO entries (`+sqlstore.EntryColumns+`, selectors_key)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: create entries: prepare: %w", err)
	}
	defer ins.Close()
	revs := make([]int64, len(rows))
	for i := range rows {
		r := &rows[i]
		next := rev + 1
		res, err := ins.ExecContext(ctx, r.ID, r.SPIFFEID, r.ParentID, r.Selectors, r.X509TTL, r.JWTTTL,
			r.DNSNames, r.FederatesWith, r.Admin, r.Downstream, r.Hint, next, createdNanos, r.SelectorsKey)
		if err != nil {
			return nil, fmt.Errorf("sqlite: create entries: entry %d: %w", i, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return nil, fmt.Errorf("sqlite: create entries: entry %d: %w", i, err)
		}
		if n > 0 {
			rev, revs[i] = next, next
		}
	}
	return revs, nil
}

// CommitRevision records ev and stores rev as the current revision.
func (b backend) CommitRevision(ctx context.Context, qr sqlstore.Querier, rev int64, ev *datastore.EntryEvent) error {
	if ev != nil {
		if _, err := qr.Exec(ctx, `INSERT INTO entry_events (revision, entry_id, deleted) VALUES ($1, $2, $3)`,
			ev.Revision, ev.EntryID, ev.Deleted); err != nil {
			return fmt.Errorf("sqlite: entry %q: event: %w", ev.EntryID, err)
		}
	}
	if _, err := qr.Exec(ctx, `UPDATE revision SET value = $1 WHERE id = 1`, rev); err != nil {
		return fmt.Errorf("sqlite: set revision: %w", err)
	}
	return nil
}

// q runs statements on a database/sql pool or transaction.
type q struct {
	db interface {
		ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
		QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
		QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	}
}

func (x q) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := x.db.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (x q) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	return x.db.QueryRowContext(ctx, query, args...)
}

func (x q) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	rows, err := x.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{rows}, nil
}

// sqlRows is *sql.Rows with the Close of sqlstore.Rows (its error is
// Err's).
type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { _ = r.Rows.Close() }

// txQ is a write transaction.
type txQ struct {
	q
	tx *sql.Tx
}

func (t txQ) Commit(context.Context) error   { return t.tx.Commit() }
func (t txQ) Rollback(context.Context) error { return t.tx.Rollback() }
