package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hallmarkid/hallmark/server/datastore"
	"github.com/hallmarkid/hallmark/server/datastore/sqlstore"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// busyTimeout bounds how long a statement waits for a lock held by another
// process (or another Store on the same file) before failing.
const busyTimeout = 10 * time.Second

// maxReaders bounds the read pool.
const maxReaders = 8

// core is sqlstore.Core under an unexported name: Store gets its methods,
// not a Core field.
type core = sqlstore.Core

// Store is a SQLite datastore. It is safe for concurrent use. Its
// operations are sqlstore's, run on the two pools below.
type Store struct {
	*core

	path string
	log  *slog.Logger

	// writeDB has exactly one connection: writes queue for it, so writers
	// in this process never meet SQLITE_BUSY from each other.
	writeDB *sql.DB
	// readDB holds query-only connections that read WAL snapshots
	// concurrently with the writer.
	readDB *sql.DB

	closeOnce sync.Once
	closeErr  error
}

var (
	_ datastore.Store      = (*Store)(nil)
	_ datastore.OpObserver = (*Store)(nil)
)

// Open opens (creating if needed) the database at path and brings its
// schema up to date. The directory is created 0700 and the file 0600 when
// missing; an existing file readable by group or others is tightened to
// 0600. A database whose schema is newer than this code is refused. log
// may be nil.
func Open(ctx context.Context, path string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("sqlite: open: want a file path, got %q", path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	if err := prepareFiles(abs, log); err != nil {
		return nil, err
	}

	s := &Store{path: abs, log: log}
	s.core = sqlstore.New(&dialect, backend{s}, nil)
	if err := s.open(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) open(ctx context.Context) error {
	var err error
	s.writeDB, err = sql.Open("sqlite", dsn(s.path,
		"_pragma=journal_mode(WAL)",
		"_pragma=synchronous(FULL)",
		"_pragma=cache_size(-32768)", // 32 MiB: big batches commit without spilling mid-transaction
		"_txlock=immediate",
	))
	if err != nil {
		return fmt.Errorf("sqlite: open: %w", err)
	}
	s.writeDB.SetMaxOpenConns(1)
	s.writeDB.SetMaxIdleConns(1)
	s.writeDB.SetConnMaxLifetime(0)
	s.writeDB.SetConnMaxIdleTime(0)

	var mode string
	if err := s.writeDB.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("sqlite: open %s: %w", s.path, err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("sqlite: open %s: journal mode is %q, want wal", s.path, mode)
	}
	version, err := migrate(ctx, s.writeDB)
	if err != nil {
		return err
	}

	s.readDB, err = sql.Open("sqlite", dsn(s.path, "_pragma=query_only(1)"))
	if err != nil {
		return fmt.Errorf("sqlite: open: %w", err)
	}
	s.readDB.SetMaxOpenConns(maxReaders)
	s.readDB.SetMaxIdleConns(maxReaders)
	if err := s.readDB.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: open %s: %w", s.path, err)
	}
	// SQLite gives the -wal and -shm files the main file's mode; tighten
	// any left behind by an older, looser installation.
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := tighten(s.path+suffix, s.log); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	s.log.Info("sqlite: datastore opened", "path", s.path, "schema_version", version)
	return nil
}

// dsn builds a URI for path with the pragmas every connection needs.
func dsn(path string, extra ...string) string {
	u := url.URL{Scheme: "file", Path: path}
	params := append([]string{
		fmt.Sprintf("_pragma=busy_timeout(%d)", busyTimeout.Milliseconds()),
		"_pragma=foreign_keys(1)",
	}, extra...)
	return u.String() + "?" + strings.Join(params, "&")
}

// prepareFiles creates the directory (0700) and the database file (0600)
// if they are missing, and tightens an existing file's mode.
func prepareFiles(path string, log *slog.Logger) error {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("sqlite: create directory: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("sqlite: stat directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("sqlite: create database file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("sqlite: create database file: %w", err)
	}
	return tighten(path, log)
}

// tighten removes group and other permissions from an existing file.
func tighten(path string, log *slog.Logger) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("sqlite: %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		log.Warn("sqlite: tightening database file permissions", "path", path, "was", perm.String())
		if err := os.Chmod(path, perm&0o700); err != nil {
			return fmt.Errorf("sqlite: chmod %s: %w", path, err)
		}
	}
	return nil
}

// Path returns the absolute path of the database file.
func (s *Store) Path() string { return s.path }

// Ping reports whether the database answers on both pools.
func (s *Store) Ping(ctx context.Context) error {
	defer s.Timed("ping")()
	var one int
	if err := s.readDB.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("sqlite: ping: %w", err)
	}
	if err := s.writeDB.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: ping: %w", err)
	}
	return nil
}

// Close closes both pools. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		if s.readDB != nil {
			errs = append(errs, s.readDB.Close())
		}
		if s.writeDB != nil {
			errs = append(errs, s.writeDB.Close())
		}
		if err := errors.Join(errs...); err != nil {
			s.closeErr = fmt.Errorf("sqlite: close: %w", err)
		}
	})
	return s.closeErr
}
