package uds

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// maxSymlinks bounds the symlinks followed on one path, like the kernel's
// ELOOP limit.
const maxSymlinks = 40

// policy says which directories may lie on a socket's path.
type policy struct {
	// trusted are the uids that may own the directories (and symlinks)
	// on the path.
	trusted []uint32
	// create, when nonzero, is the mode of missing directories, which are
	// then created (and checked like existing ones).
	create fs.FileMode
	// last checks the socket's own directory.
	last func(dir string, st *syscall.Stat_t) error
}

// stat returns fi's raw stat, or nil.
func stat(fi fs.FileInfo) *syscall.Stat_t {
	st, _ := fi.Sys().(*syscall.Stat_t)
	return st
}

// modeString formats a raw st_mode's permission and special bits: 0777, 1777.
func modeString(st *syscall.Stat_t) string { return fmt.Sprintf("%04o", st.Mode&0o7777) }

func (p policy) trustedUID(uid uint32) bool { return slices.Contains(p.trusted, uid) }

func (p policy) trustedNames() string {
	var names []string
	for _, u := range p.trusted {
		if u == 0 {
			names = append(names, "root")
		} else {
			names = append(names, fmt.Sprintf("uid %d", u))
		}
	}
	slices.Sort(names)
	return strings.Join(slices.Compact(names), " or ")
}

// writableByOthers reports whether group or others may write to the
// directory and the sticky bit does not stop them renaming its entries.
func writableByOthers(st *syscall.Stat_t) bool {
	return st.Mode&0o022 != 0 && st.Mode&syscall.S_ISVTX == 0
}

// checkAncestor checks a directory above the socket's own.
func (p policy) checkAncestor(dir string, st *syscall.Stat_t) error {
	switch {
	case !p.trustedUID(st.Uid):
		return fmt.Errorf("directory %s is owned by uid %d (mode %s); only %s may own a directory above the socket",
			dir, st.Uid, modeString(st), p.trustedNames())
	case writableByOthers(st):
		return fmt.Errorf("directory %s (owner uid %d, mode %s) is writable by group or others, who could replace what lies below it",
			dir, st.Uid, modeString(st))
	}
	return nil
}

// walk checks dir, the directory a socket lives in, from "/" down, and
// returns it with the symlinks above it resolved. Symlinks are followed
// in ancestors (their owner must be trusted: in a sticky directory the
// owner could replace them) and refused in dir itself.
func (p policy) walk(dir string) (string, error) {
	if !filepath.IsAbs(dir) {
		return "", fmt.Errorf("%s is not an absolute path", dir)
	}
	rest := components(dir)
	cur := "/"
	fi, err := os.Lstat(cur)
	if err != nil {
		return "", err
	}
	if err := p.checkDir(cur, fi, len(rest) == 0); err != nil {
		return "", err
	}
	links := 0
	for len(rest) > 0 {
		next := filepath.Join(cur, rest[0])
		rest = rest[1:]
		last := len(rest) == 0
		fi, err := os.Lstat(next)
		if errors.Is(err, fs.ErrNotExist) && p.create != 0 {
			// cur is trusted: nobody else can race us here.
			if err := os.Mkdir(next, p.create); err == nil {
				// Mkdir's mode is filtered by the umask.
				if err := os.Chmod(next, p.create); err != nil {
					return "", err
				}
			} else if !errors.Is(err, fs.ErrExist) {
				return "", fmt.Errorf("create %s: %w", next, err)
			}
			fi, err = os.Lstat(next)
		}
		if err != nil {
			return "", err
		}
		st := stat(fi)
		if st == nil {
			return "", fmt.Errorf("%s: no owner information", next)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			if last {
				return "", fmt.Errorf("%s is a symlink; the socket's own directory must be a real directory", next)
			}
			if !p.trustedUID(st.Uid) {
				return "", fmt.Errorf("symlink %s is owned by uid %d; only %s may own a symlink above the socket",
					next, st.Uid, p.trustedNames())
			}
			if links++; links > maxSymlinks {
				return "", fmt.Errorf("%s: too many levels of symbolic links", dir)
			}
			target, err := os.Readlink(next)
			if err != nil {
				return "", err
			}
			if !filepath.IsAbs(target) {
				target = filepath.Join(cur, target) // cur holds no symlink: ".." is lexical
			}
			// Start again from "/" on the resolved path.
			rest = components(filepath.Join(append([]string{target}, rest...)...))
			cur = "/"
			continue
		}
		if err := p.checkDir(next, fi, last); err != nil {
			return "", err
		}
		cur = next
	}
	return cur, nil
}

func (p policy) checkDir(dir string, fi fs.FileInfo, last bool) error {
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	st := stat(fi)
	if st == nil {
		return fmt.Errorf("%s: no owner information", dir)
	}
	if last {
		return p.last(dir, st)
	}
	return p.checkAncestor(dir, st)
}

// components splits a clean absolute path into its names.
func components(path string) []string {
	path = strings.Trim(filepath.Clean(path), "/")
	if path == "" {
		return nil
	}
	return strings.Split(path, "/")
}
