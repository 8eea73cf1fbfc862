package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migration is one numbered schema change.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations are the embedded schema changes, versions 1..n in order.
var migrations = mustLoadMigrations(migrationFS)

// SchemaVersion is the schema version this code writes and understands.
var SchemaVersion = len(migrations)

// migrateLockKey is the advisory lock (per database) that serialises
// schema changes between servers starting at once: "hallmark" in ASCII.
const migrateLockKey int64 = 0x68616c6c6d61726b

func mustLoadMigrations(fsys fs.FS) []migration {
	ms, err := loadMigrations(fsys)
	if err != nil {
		panic(err)
	}
	return ms
}

// loadMigrations reads migrations/NNNN_name.sql files and checks that
// their numbers run 1, 2, 3... without gaps or repeats.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("postgres: migrations: %w", err)
	}
	var ms []migration
	for _, name := range names {
		base := strings.TrimPrefix(name, "migrations/")
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("postgres: migration %q: name must be NNNN_description.sql", base)
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("postgres: migration %q: %w", base, err)
		}
		ms = append(ms, migration{version: v, name: base, sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("postgres: migration %q: want version %d (versions must run 1, 2, 3...)", m.name, i+1)
		}
	}
	if len(ms) == 0 {
		return nil, errors.New("postgres: no migrations")
	}
	return ms, nil
}

// migrate applies the missing migrations and the schema_version update in
// one transaction, holding a transaction-scoped advisory lock: servers
// opening the database at once queue on the lock, and each re-reads the
// version once it holds it. DDL is transactional in PostgreSQL, so a failed
// migration leaves nothing behind. A database newer than SchemaVersion is
// refused untouched. It returns the resulting version.
func migrate(ctx context.Context, conn *pgx.Conn) (int, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("postgres: migrate: begin: %w", err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // no-op after commit

	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrateLockKey); err != nil {
		return 0, fmt.Errorf("postgres: migrate: lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		id      integer NOT NULL PRIMARY KEY CHECK (id = 1),
		version integer NOT NULL
	)`); err != nil {
		return 0, fmt.Errorf("postgres: migrate: %w", err)
	}
	var version int
	err = tx.QueryRow(ctx, "SELECT version FROM schema_version WHERE id = 1").Scan(&version)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		version = 0
	case err != nil:
		return 0, fmt.Errorf("postgres: migrate: read schema version: %w", err)
	}
	if version > SchemaVersion {
		return version, fmt.Errorf("postgres: database schema version %d is newer than this binary supports (%d); refusing to open it", version, SchemaVersion)
	}
	if version < 0 {
		return version, fmt.Errorf("postgres: database schema version %d is invalid", version)
	}
	if version == SchemaVersion {
		return version, nil
	}
	for _, m := range migrations[version:] {
		// No arguments: pgx sends it with the simple protocol, which runs
		// several statements.
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return version, fmt.Errorf("postgres: migration %s: %w", m.name, err)
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO schema_version (id, version) VALUES (1, $1)
		ON CONFLICT (id) DO UPDATE SET version = excluded.version`, SchemaVersion); err != nil {
		return version, fmt.Errorf("postgres: migrate: record version: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return version, fmt.Errorf("postgres: migrate: commit: %w", err)
	}
	return SchemaVersion, nil
}
