package authority

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Modes of a kind's directory and of its private files.
const (
	DirMode     fs.FileMode = 0o700
	PrivateMode fs.FileMode = 0o600
)

// Files handles the files of a kind's directory; Prefix starts its errors.
type Files struct{ Prefix string }

// PrepareDir creates dir with mode 0700 if missing and refuses a directory
// that group or others may write to (they could swap the keys), and with
// refuseSymlink a symbolic link.
func (f Files) PrepareDir(dir string, refuseSymlink bool) error {
	if dir == "" {
		return fmt.Errorf("%s: Dir is required", f.Prefix)
	}
	stat := os.Stat
	if refuseSymlink {
		stat = os.Lstat
	}
	fi, err := stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, DirMode); err != nil {
			return fmt.Errorf("%s: create directory: %w", f.Prefix, err)
		}
		// MkdirAll is subject to the umask; set the mode explicitly.
		if err := os.Chmod(dir, DirMode); err != nil {
			return fmt.Errorf("%s: create directory: %w", f.Prefix, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("%s: directory: %w", f.Prefix, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%s: %s is a symbolic link; refusing it", f.Prefix, dir)
	case !fi.IsDir():
		return fmt.Errorf("%s: %s is not a directory", f.Prefix, dir)
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("%s: directory %s has mode %#o; group and others must not be able to write to it", f.Prefix, dir, fi.Mode().Perm())
	}
	return nil
}

// ReadBounded reads path, refusing more than limit bytes.
func (f Files) ReadBounded(path string, limit int) ([]byte, error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Prefix, err)
	}
	defer fd.Close()
	b, err := io.ReadAll(io.LimitReader(fd, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("%s: read %s: %w", f.Prefix, path, err)
	}
	if len(b) > limit {
		return nil, fmt.Errorf("%s: %s is larger than %d bytes", f.Prefix, path, limit)
	}
	return b, nil
}

// WriteTemp writes data to a new temporary file in dir with mode perm,
// syncs and closes it, and returns its path.
func (f Files) WriteTemp(dir, name string, data []byte, perm fs.FileMode) (path string, err error) {
	fd, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("%s: write %s: %w", f.Prefix, name, err)
	}
	defer func() {
		if err != nil {
			fd.Close()
			os.Remove(fd.Name())
		}
	}()
	if err := fd.Chmod(perm); err != nil {
		return "", fmt.Errorf("%s: write %s: %w", f.Prefix, name, err)
	}
	if _, err := fd.Write(data); err != nil {
		return "", fmt.Errorf("%s: write %s: %w", f.Prefix, name, err)
	}
	if err := fd.Sync(); err != nil {
		return "", fmt.Errorf("%s: write %s: %w", f.Prefix, name, err)
	}
	if err := fd.Close(); err != nil {
		return "", fmt.Errorf("%s: write %s: %w", f.Prefix, name, err)
	}
	return fd.Name(), nil
}

// SyncDir flushes dir's entries to disk.
func (f Files) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("%s: sync directory: %w", f.Prefix, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("%s: sync directory: %w", f.Prefix, err)
	}
	return nil
}

// readStateFile returns the local state document, or fs.ErrNotExist.
func (g *Engine[K, D, P]) readStateFile() ([]byte, error) {
	f := Files{g.spec.Prefix}
	path := filepath.Join(g.cfg.Dir, g.spec.StateFileName)
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: state file %s is not a regular file", f.Prefix, path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s: state file %s has mode %#o; want 0600 (no group or other access)", f.Prefix, path, perm)
	}
	return f.ReadBounded(path, g.spec.MaxStateSize)
}

// writeStateFile atomically replaces the local state document (temporary
// file, fsync, rename, fsync of the directory), then removes the files of
// the single-key layout, which the state now supersedes.
func (g *Engine[K, D, P]) writeStateFile(data []byte) error {
	f, dir := Files{g.spec.Prefix}, g.cfg.Dir
	tmp, err := f.WriteTemp(dir, g.spec.StateFileName, data, PrivateMode)
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // no-op after the rename
	if err := os.Rename(tmp, filepath.Join(dir, g.spec.StateFileName)); err != nil {
		return fmt.Errorf("%s: install state file: %w", f.Prefix, err)
	}
	if err := f.SyncDir(dir); err != nil {
		return err
	}
	for _, name := range g.spec.Superseded {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: remove superseded %s: %w", f.Prefix, name, err)
		}
	}
	return nil
}
