package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
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
		return nil, fmt.Errorf("sqlite: migrations: %w", err)
	}
	var ms []migration
	for _, name := range names {
		base := strings.TrimPrefix(name, "migrations/")
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("sqlite: migration %q: name must be NNNN_description.sql", base)
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("sqlite: migration %q: %w", base, err)
		}
		ms = append(ms, migration{version: v, name: base, sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("sqlite: migration %q: want version %d (versions must run 1, 2, 3...)", m.name, i+1)
		}
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("sqlite: no migrations")
	}
	return ms, nil
}

// migrate applies missing migrations, each in its own immediate
// transaction together with the schema_version update, and returns the
// resulting version. Concurrent openers (other processes) serialise on the
// write lock and re-read the version inside it. A database newer than
// SchemaVersion is refused untouched.
func migrate(ctx context.Context, db *sql.DB) (int, error) {
	for {
		version, done, err := migrateOne(ctx, db)
		if err != nil || done {
			return version, err
		}
	}
}

func migrateOne(ctx context.Context, db *sql.DB) (version int, done bool, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, false, fmt.Errorf("sqlite: migrate: begin: %w", err)
	}
	defer func() {
		if err != nil || done {
			_ = tx.Rollback()
		}
	}()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		id      INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
		version INTEGER NOT NULL
	) STRICT`); err != nil {
		return 0, false, fmt.Errorf("sqlite: migrate: %w", err)
	}
	err = tx.QueryRowContext(ctx, "SELECT version FROM schema_version WHERE id = 1").Scan(&version)
	switch {
	case err == sql.ErrNoRows:
		version = 0
	case err != nil:
		return 0, false, fmt.Errorf("sqlite: migrate: read schema version: %w", err)
	}
	if version > SchemaVersion {
		return version, false, fmt.Errorf("sqlite: database schema version %d is newer than this binary supports (%d); refusing to open it", version, SchemaVersion)
	}
	if version < 0 {
		return version, false, fmt.Errorf("sqlite: database schema version %d is invalid", version)
	}
	if version == SchemaVersion {
		return version, true, nil
	}
	m := migrations[version]
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return version, false, fmt.Errorf("sqlite: migration %s: %w", m.name, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (id, version) VALUES (1, ?)
		ON CONFLICT (id) DO UPDATE SET version = excluded.version`, m.version); err != nil {
		return version, false, fmt.Errorf("sqlite: migration %s: record version: %w", m.name, err)
	}
	if err := tx.Commit(); err != nil {
		return version, false, fmt.Errorf("sqlite: migration %s: commit: %w", m.name, err)
	}
	return m.version, false, nil
}
