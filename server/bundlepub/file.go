package bundlepub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// maxFileRead bounds how much of an existing file is read for comparison.
const maxFileRead = 4 << 20

// File publishes the bundle to a file: written to a temporary file in the
// same directory, synced, made mode 0644 and renamed over the target, so a
// reader sees the old bundle or the new one, never a part. The directory
// must not be writable by group or others (sticky or not): whoever can
// create files there could put their own bundle in place for agents to
// trust.
type File struct {
	Path string
}

func (f *File) String() string { return "file " + f.Path }

// Publish implements Target.
func (f *File) Publish(_ context.Context, content []byte) (bool, error) {
	dir := filepath.Dir(f.Path)
	if st, err := os.Stat(dir); err != nil {
		return false, fmt.Errorf("bundlepub: file: %w", err)
	} else if st.Mode().Perm()&0o022 != 0 {
		return false, fmt.Errorf("bundlepub: file: directory %s is writable by group or others (mode %v): anyone who can write there could replace the bundle agents trust", dir, st.Mode().Perm())
	}
	if cur, err := readSmall(f.Path); err == nil && bytes.Equal(cur, content) {
		if st, err := os.Stat(f.Path); err == nil && st.Mode().Perm() == 0o644 {
			return false, nil
		}
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("bundlepub: file: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(f.Path)+".tmp*")
	if err != nil {
		return false, fmt.Errorf("bundlepub: file: %w", err)
	}
	name := tmp.Name()
	defer os.Remove(name) // no-op after the rename
	_, err = tmp.Write(content)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(name, f.Path)
	}
	if err != nil {
		return false, fmt.Errorf("bundlepub: file: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return true, nil
}

// readSmall reads up to maxFileRead+1 bytes of path: a longer file never
// equals a bundle.
func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxFileRead+1))
}
