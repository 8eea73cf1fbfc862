package postgres

import (
	"context"
	"embed"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hallmarkid/hallmark/server/datastore"
	"github.com/hallmarkid/hallmark/server/datastore/sqlstore"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migrations are the embedded schema changes, versions 1..n in order.
var migrations = sqlstore.MustLoadMigrations("postgres", migrationFS)

// SchemaVersion is the schema version this code writes and understands.
var SchemaVersion = len(migrations)

// migrateLockKey is the advisory lock (per database) that serialises
// schema changes between servers starting at once: "hallmark" in ASCII.
const migrateLockKey int64 = 0x68616c6c6d61726b

// dialect is how PostgreSQL spells what differs. Every entry change locks
// the one-row revision counter first (FOR UPDATE), so entry changes from
// all servers commit one at a time, in revision order. Agent evictions and
// bans notify EvictChannel in the same statement, so the notification goes
// out if and only if the row changed, when that commits; KV writes notify
// KVChannel the same way.
var dialect = sqlstore.Dialect{
	Name:         "postgres",
	Product:      "PostgreSQL",
	Greatest:     "GREATEST",
	ByteOrder:    ` COLLATE "C"`,
	TextArrays:   true,
	NoNUL:        true,
	LockRevision: `SELECT value FROM revision WHERE id = 1 FOR UPDATE`,
	BanAgent: `WITH b AS (UPDATE agents SET banned = true, updated_at = GREATEST($2, created_at)
		WHERE id = $1 RETURNING id) SELECT pg_notify('` + EvictChannel + `', id) FROM b`,
	DeleteAgent: `WITH d AS (DELETE FROM agents WHERE id = $1 RETURNING id)
		SELECT pg_notify('` + EvictChannel + `', id) FROM d`,
	EventsHorizon: `SELECT revision FROM entry_events_pruned WHERE id = 1`,
	NotifyKV:      kvNotify,
}

// migrate applies the missing migrations and the schema_version update in
// one transaction, holding a transaction-scoped advisory lock: servers
// opening the database at once queue on the lock, and each re-reads the
// version once it holds it. DDL is transactional in PostgreSQL, so a failed
// migration leaves nothing behind. It returns the resulting version.
func migrate(ctx context.Context, conn *pgx.Conn) (int, error) {
	m := sqlstore.Migrator{
		Name:       "postgres",
		Migrations: migrations,
		Begin: func(ctx context.Context) (sqlstore.Tx, error) {
			tx, err := conn.Begin(ctx)
			if err != nil {
				return nil, err
			}
			return txQ{q{tx}, tx}, nil
		},
		Lock: fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", migrateLockKey),
		VersionTable: `CREATE TABLE IF NOT EXISTS schema_version (
		id      integer NOT NULL PRIMARY KEY CHECK (id = 1),
		version integer NOT NULL
	)`,
		AllAtOnce: true,
	}
	return m.Migrate(ctx)
}

// backend runs sqlstore's queries on the pool: single statements as they
// are (each is atomic on its own), entry changes in read-committed
// transactions, snapshots in repeatable-read ones.
type backend struct{ s *Store }

// Write runs fn in a read-committed transaction and commits it.
func (b backend) Write(ctx context.Context, op string, fn func(q sqlstore.Querier) error) error {
	tx, err := b.s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: %s: begin: %w", op, err)
	}
	if err := fn(txQ{q{tx}, tx}); err != nil {
		_ = tx.Rollback(context.Background())
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: %s: commit: %w", op, err)
	}
	return nil
}

// WriteEach runs fn's statements on the pool, each in its own implicit
// transaction; row locks and re-checked WHERE clauses arbitrate between
// servers.
func (b backend) WriteEach(_ context.Context, _ string, fn func(q sqlstore.Querier) error) error {
	return fn(q{b.s.pool})
}

// Read runs fn in a read-only repeatable-read transaction: every query in
// fn sees one snapshot.
func (b backend) Read(ctx context.Context, op string, fn func(q sqlstore.Querier) error) error {
	tx, err := b.s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("postgres: %s: begin: %w", op, err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // read-only; nothing to undo
	return fn(q{tx})
}

func (b backend) Reader() sqlstore.Querier { return q{b.s.pool} }

// entryCopyColumns are the columns InsertEntries copies in, in this order.
var entryCopyColumns = []string{"id", "spiffe_id", "parent_id", "selectors", "selectors_key", "x509_svid_ttl",
	"jwt_svid_ttl", "dns_names", "federates_with", "admin", "downstream", "hint", "revision", "created_at"}

// InsertEntries finds the rows whose ID or similarity key is stored or
// taken earlier in the batch in one query, and copies the others in with
// one COPY. The revision lock taken first keeps other writers out between
// the check and the copy.
func (b backend) InsertEntries(ctx context.Context, qr sqlstore.Querier, rows []sqlstore.EntryRow, rev, createdNanos int64) ([]int64, error) {
	tx := qr.(txQ).tx
	taken, err := conflicts(ctx, tx, rows)
	if err != nil {
		return nil, fmt.Errorf("postgres: create entries: %w", err)
	}
	var (
		revs     = make([]int64, len(rows))
		seenIDs  = make(map[string]bool, len(rows))
		seenKeys = make(map[string]bool, len(rows))
		copyRows = make([][]any, 0, len(rows))
	)
	for i := range rows {
		r := &rows[i]
		key := r.UniqueKey()
		if taken[i] || seenIDs[r.ID] || seenKeys[key] {
			continue
		}
		seenIDs[r.ID], seenKeys[key] = true, true
		rev++
		revs[i] = rev
		copyRows = append(copyRows, []any{r.ID, r.SPIFFEID, r.ParentID, r.Selectors, r.SelectorsKey, r.X509TTL,
			r.JWTTTL, r.DNSNames, r.FederatesWith, r.Admin, r.Downstream, r.Hint, rev, createdNanos})
	}
	if len(copyRows) == 0 {
		return revs, nil
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"entries"}, entryCopyColumns, pgx.CopyFromRows(copyRows)); err != nil {
		return nil, fmt.Errorf("postgres: create entries: copy: %w", err)
	}
	return revs, nil
}

// conflicts reports, for each row, whether its ID or its (SPIFFE ID,
// parent, selectors) is already stored.
func conflicts(ctx context.Context, tx pgx.Tx, rows []sqlstore.EntryRow) ([]bool, error) {
	var (
		ids     = make([]string, len(rows))
		spiffes = make([]string, len(rows))
		parents = make([]string, len(rows))
		keys    = make([][]byte, len(rows))
	)
	for i, r := range rows {
		ids[i], spiffes[i], parents[i], keys[i] = r.ID, r.SPIFFEID, r.ParentID, r.SelectorsKey
	}
	res, err := tx.Query(ctx, `SELECT b.i FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[])
			WITH ORDINALITY AS b(id, spiffe_id, parent_id, selectors_key, i)
		WHERE EXISTS (SELECT 1 FROM entries e WHERE e.id = b.id)
		   OR EXISTS (SELECT 1 FROM entries e WHERE e.spiffe_id = b.spiffe_id AND e.parent_id = b.parent_id
		              AND e.selectors_key = b.selectors_key)`, ids, spiffes, parents, keys)
	if err != nil {
		return nil, fmt.Errorf("duplicate check: %w", err)
	}
	taken := make([]bool, len(rows))
	var i int64
	if _, err := pgx.ForEachRow(res, []any{&i}, func() error {
		if i < 1 || i > int64(len(rows)) {
			return fmt.Errorf("duplicate check: row %d out of range", i)
		}
		taken[i-1] = true
		return nil
	}); err != nil {
		return nil, fmt.Errorf("duplicate check: %w", err)
	}
	return taken, nil
}

// CommitRevision records ev, stores rev as the current revision and
// queues the change notification, which PostgreSQL delivers only if the
// transaction commits: one round trip.
func (b backend) CommitRevision(ctx context.Context, qr sqlstore.Querier, rev int64, ev *datastore.EntryEvent) error {
	batch := &pgx.Batch{}
	if ev != nil {
		batch.Queue(`INSERT INTO entry_events (revision, entry_id, deleted) VALUES ($1, $2, $3)`, ev.Revision, ev.EntryID, ev.Deleted)
	}
	batch.Queue(`UPDATE revision SET value = $1 WHERE id = 1`, rev)
	batch.Queue(`SELECT pg_notify($1, $2)`, NotifyChannel, strconv.FormatInt(rev, 10))
	if err := qr.(txQ).tx.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("postgres: set revision: %w", err)
	}
	return nil
}

// q runs statements on the pool, a connection or a transaction.
type q struct {
	db interface {
		Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
		Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
		QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	}
}

func (x q) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := x.db.Exec(ctx, query, args...)
	return tag.RowsAffected(), err
}

func (x q) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	return x.db.QueryRow(ctx, query, args...)
}

func (x q) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	rows, err := x.db.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return rows, nil
}

// txQ is a transaction.
type txQ struct {
	q
	tx pgx.Tx
}

func (t txQ) Commit(ctx context.Context) error   { return t.tx.Commit(ctx) }
func (t txQ) Rollback(ctx context.Context) error { return t.tx.Rollback(ctx) }
