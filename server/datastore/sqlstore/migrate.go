package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
)

// Migration is one numbered schema change.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// MustLoadMigrations is LoadMigrations for embedded files: it panics on
// error (a broken build).
func MustLoadMigrations(name string, fsys fs.FS) []Migration {
	ms, err := LoadMigrations(name, fsys)
	if err != nil {
		panic(err)
	}
	return ms
}

// LoadMigrations reads migrations/NNNN_name.sql files and checks that
// their numbers run 1, 2, 3... without gaps or repeats. name prefixes
// errors.
func LoadMigrations(name string, fsys fs.FS) ([]Migration, error) {
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("%s: migrations: %w", name, err)
	}
	var ms []Migration
	for _, file := range names {
		base := strings.TrimPrefix(file, "migrations/")
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("%s: migration %q: name must be NNNN_description.sql", name, base)
		}
		b, err := fs.ReadFile(fsys, file)
		if err != nil {
			return nil, fmt.Errorf("%s: migration %q: %w", name, base, err)
		}
		ms = append(ms, Migration{Version: v, Name: base, SQL: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i, m := range ms {
		if m.Version != i+1 {
			return nil, fmt.Errorf("%s: migration %q: want version %d (versions must run 1, 2, 3...)", name, m.Name, i+1)
		}
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("%s: no migrations", name)
	}
	return ms, nil
}

// Tx is a transaction the migration runner commits or rolls back.
type Tx interface {
	Querier
	Commit(ctx context.Context) error
	Rollback(ctx context.Context) error
}

// Migrator applies a backend's migrations.
type Migrator struct {
	// Name prefixes errors.
	Name       string
	Migrations []Migration
	// Begin starts a write transaction; concurrent migrators (in other
	// processes) must queue on it or on Lock.
	Begin func(ctx context.Context) (Tx, error)
	// Lock, if set, runs first in each transaction: a lock the
	// transaction holds until it ends.
	Lock string
	// VersionTable creates the one-row schema_version table if missing.
	VersionTable string
	// AllAtOnce applies every missing migration in one transaction (where
	// DDL is transactional); otherwise each goes in its own, together
	// with its schema_version update.
	AllAtOnce bool
}

// Migrate applies the missing migrations and returns the resulting
// version. Each transaction re-reads the version once it holds the write
// lock, so processes opening the database at once are safe. A database
// newer than this code (more migrations than it has) is refused untouched.
func (m *Migrator) Migrate(ctx context.Context) (int, error) {
	for {
		version, done, err := m.step(ctx)
		if err != nil || done {
			return version, err
		}
	}
}

// step runs one transaction: it applies the next migration (or, with
// AllAtOnce, all of them). done reports that the schema is up to date.
func (m *Migrator) step(ctx context.Context) (version int, done bool, err error) {
	latest := len(m.Migrations)
	tx, err := m.Begin(ctx)
	if err != nil {
		return 0, false, fmt.Errorf("%s: migrate: begin: %w", m.Name, err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = tx.Rollback(context.Background())
		}
	}()
	if m.Lock != "" {
		if _, err := tx.Exec(ctx, m.Lock); err != nil {
			return 0, false, fmt.Errorf("%s: migrate: lock: %w", m.Name, err)
		}
	}
	if _, err := tx.Exec(ctx, m.VersionTable); err != nil {
		return 0, false, fmt.Errorf("%s: migrate: %w", m.Name, err)
	}
	err = tx.QueryRow(ctx, "SELECT version FROM schema_version WHERE id = 1").Scan(&version)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		version = 0
	case err != nil:
		return 0, false, fmt.Errorf("%s: migrate: read schema version: %w", m.Name, err)
	}
	if version > latest {
		return version, false, fmt.Errorf("%s: database schema version %d is newer than this binary supports (%d); refusing to open it", m.Name, version, latest)
	}
	if version < 0 {
		return version, false, fmt.Errorf("%s: database schema version %d is invalid", m.Name, version)
	}
	if version == latest {
		return version, true, nil
	}
	todo := m.Migrations[version : version+1]
	if m.AllAtOnce {
		todo = m.Migrations[version:]
	}
	for _, mig := range todo {
		// No arguments: pgx sends it with the simple protocol, which runs
		// several statements.
		if _, err := tx.Exec(ctx, mig.SQL); err != nil {
			return version, false, fmt.Errorf("%s: migration %s: %w", m.Name, mig.Name, err)
		}
	}
	last := todo[len(todo)-1]
	if _, err := tx.Exec(ctx, `INSERT INTO schema_version (id, version) VALUES (1, $1)
		ON CONFLICT (id) DO UPDATE SET version = excluded.version`, last.Version); err != nil {
		return version, false, fmt.Errorf("%s: migration %s: record version: %w", m.Name, last.Name, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return version, false, fmt.Errorf("%s: migration %s: commit: %w", m.Name, last.Name, err)
	}
	committed = true
	return last.Version, m.AllAtOnce, nil
}
