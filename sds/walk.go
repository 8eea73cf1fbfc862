package sds

import (
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// File names are read with the caller's rights, not the agent's. The
// agent usually runs as root; without this, any local user could have it
// read a key in another user's private directory. The path is resolved one
// component at a time from "/" with O_PATH|O_NOFOLLOW descriptors, and for
// each directory looked up in, the caller (its uid, gid and supplementary
// groups) must have search permission by the kernel's rules for mode bits;
// the file itself must be readable by the caller. Symlinks are followed by
// the walk itself, so the directories on the way to their target are
// checked too; below file_dir they must stay below it (no absolute target,
// no ".." above file_dir). A file or directory carrying a POSIX ACL is
// refused: the walk does not evaluate ACLs, and an ACL can take away what
// the mode bits grant. A caller with uid 0 may read whatever the agent can.
//
// Every step is relative to the descriptor of the directory checked just
// before, so renaming a directory during the walk cannot make the walk
// check one directory and descend into another.

// maxSymlinks bounds the symlinks followed in one walk (the kernel's
// limit); maxSteps bounds the directories looked up in, so that symlinks
// full of "a/../a/../" cannot make one read cost a million system calls.
const (
	maxSymlinks = 40
	maxSteps    = 1024
)

// fileCred is the identity a file is read for.
type fileCred struct {
	uid, gid uint32
	groups   []uint32
}

func credOf(c callerInfo) fileCred { return fileCred{uid: c.UID, gid: c.GID, groups: c.Groups} }

func (c fileCred) String() string {
	var gs []string
	for _, g := range c.groups {
		gs = append(gs, strconv.FormatUint(uint64(g), 10))
	}
	return fmt.Sprintf("uid %d, gid %d, groups [%s]", c.uid, c.gid, strings.Join(gs, " "))
}

func (c fileCred) inGroup(gid uint32) bool { return gid == c.gid || slices.Contains(c.groups, gid) }

// Permission bits as in a mode's "other" triplet.
const (
	mayRead = 4
	mayExec = 1
)

// errEscape means a path or one of its symlinks leads out of file_dir.
var errEscape = errors.New("leads outside file_dir")

// deniedError means the caller lacks a permission on the way.
type deniedError struct {
	path string // where, as far as the walk knows
	what string // "search" or "read"
	why  string // empty, or "it has a POSIX ACL"
}

func (e *deniedError) Error() string {
	if e.why != "" {
		return fmt.Sprintf("%s: %s", e.path, e.why)
	}
	return fmt.Sprintf("%s: no %s permission", e.path, e.what)
}

// check returns nil if c may access the inode of fd (stat st) as want.
func (c fileCred) check(fd int, st *unix.Stat_t, want uint32, where, what string) error {
	if c.uid == 0 {
		return nil
	}
	acl, err := hasACL(fd)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	if acl {
		return &deniedError{path: where, what: what, why: "it has a POSIX ACL, which the agent does not evaluate for callers"}
	}
	var bits uint32
	switch {
	case st.Uid == c.uid:
		bits = st.Mode >> 6
	case c.inGroup(st.Gid):
		bits = st.Mode >> 3
	default:
		bits = st.Mode
	}
	if bits&want != want {
		return &deniedError{path: where, what: what}
	}
	return nil
}

// hasACL reports whether the inode of fd (an O_PATH descriptor) carries a
// POSIX access ACL beyond its mode bits.
func hasACL(fd int) (bool, error) {
	n, err := unix.Getxattr("/proc/self/fd/"+strconv.Itoa(fd), "system.posix_acl_access", nil)
	switch {
	case err == nil:
		return n > 0, nil
	case errors.Is(err, unix.ENODATA), errors.Is(err, unix.EOPNOTSUPP):
		return false, nil
	}
	return false, fmt.Errorf("read ACL: %w", err)
}

// walker resolves paths for one caller.
type walker struct {
	cred  fileCred
	links int
	steps int
}

// openFile opens rel (relative, clean, not ".") below dir (absolute) for
// reading as w.cred, checking dir's own path from "/" too.
func (w *walker) openFile(dir, rel string) (*os.File, error) {
	root, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: "/", Err: err}
	}
	// file_dir itself, from "/": the operator chose it, so its symlinks
	// may lead anywhere, but the caller must be able to search every
	// directory on the way.
	dfd, dparent, _, err := w.resolve(root, "/", dir, false)
	unix.Close(root)
	if err != nil {
		return nil, err
	}
	unix.Close(dparent)
	defer unix.Close(dfd)
	fd, parent, name, err := w.resolve(dfd, dir, rel, true)
	if err != nil {
		return nil, err
	}
	defer unix.Close(parent)
	defer unix.Close(fd)
	where := path.Join(dir, rel)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: where, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, errNotRegular
	}
	if err := w.cred.check(fd, &st, mayRead, where, "read"); err != nil {
		return nil, err
	}
	rfd, err := openSame(parent, name, &st)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: where, Err: err}
	}
	return os.NewFile(uintptr(rfd), where), nil
}

var (
	errNotRegular = errors.New("not a regular file")
	errTooLong    = fmt.Errorf("more than %d path components to look up", maxSteps)
)

// openSame opens name in parent for reading; it must be the regular file
// of stat st that the walk checked.
func openSame(parent int, name string, st *unix.Stat_t) (int, error) {
	rfd, err := unix.Openat(parent, name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_NOFOLLOW, 0)
	if err != nil {
		return -1, err
	}
	var got unix.Stat_t
	if err := unix.Fstat(rfd, &got); err != nil {
		unix.Close(rfd)
		return -1, err
	}
	if got.Dev != st.Dev || got.Ino != st.Ino {
		unix.Close(rfd)
		return -1, errors.New("file replaced while being opened")
	}
	return rfd, nil
}

// resolve walks path from the directory start (whose path is base) and
// returns O_PATH descriptors of what it names and of the directory it was
// found in, and its name there. With beneath, the walk may not leave start: an absolute
// symlink or a ".." above start is errEscape; without, an absolute symlink
// restarts at start (which is then "/") and ".." at start stays there.
// Every directory looked up in must be searchable by w.cred.
func (w *walker) resolve(start int, base, p string, beneath bool) (fd, parent int, name string, err error) {
	first, err := unix.Dup(start)
	if err != nil {
		return -1, -1, "", err
	}
	stack := []int{first} // open directories, start first
	names := []string{base}
	defer func() {
		for _, d := range stack {
			unix.Close(d)
		}
	}()
	comps := strings.Split(p, "/")
	last := -1 // descriptor of the final non-directory, if any
	for len(comps) > 0 {
		name = comps[0]
		comps = comps[1:]
		if last >= 0 {
			unix.Close(last)
			return -1, -1, "", unix.ENOTDIR
		}
		switch name {
		case "", ".":
			continue
		case "..":
			if len(stack) == 1 {
				if beneath {
					return -1, -1, "", errEscape
				}
				continue
			}
			unix.Close(stack[len(stack)-1])
			stack, names = stack[:len(stack)-1], names[:len(names)-1]
			continue
		}
		if w.steps++; w.steps > maxSteps {
			return -1, -1, "", errTooLong
		}
		cur, where := stack[len(stack)-1], path.Join(names...)
		var st unix.Stat_t
		if err := unix.Fstat(cur, &st); err != nil {
			return -1, -1, "", &os.PathError{Op: "stat", Path: where, Err: err}
		}
		if err := w.cred.check(cur, &st, mayExec, where, "search"); err != nil {
			return -1, -1, "", err
		}
		next, err := unix.Openat(cur, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, -1, "", &os.PathError{Op: "open", Path: path.Join(where, name), Err: err}
		}
		if err := unix.Fstat(next, &st); err != nil {
			unix.Close(next)
			return -1, -1, "", err
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			target, err := readlinkFD(next)
			unix.Close(next)
			if err != nil {
				return -1, -1, "", err
			}
			if w.links++; w.links > maxSymlinks {
				return -1, -1, "", unix.ELOOP
			}
			if strings.HasPrefix(target, "/") {
				if beneath {
					return -1, -1, "", errEscape
				}
				for _, d := range stack[1:] {
					unix.Close(d)
				}
				stack, names = stack[:1], names[:1]
			}
			comps = append(strings.Split(target, "/"), comps...)
		case unix.S_IFDIR:
			stack, names = append(stack, next), append(names, name)
		default:
			last = next
			names = append(names, name)
		}
	}
	if last < 0 {
		// A directory: it is its own result, found in its parent.
		if len(stack) < 2 {
			return -1, -1, "", errors.New("path names the starting directory")
		}
		fd, parent = stack[len(stack)-1], stack[len(stack)-2]
		stack = stack[:len(stack)-2]
		return fd, parent, names[len(names)-1], nil
	}
	parent = stack[len(stack)-1]
	stack = stack[:len(stack)-1]
	return last, parent, name, nil
}

// readlinkFD reads the target of the symlink an O_PATH descriptor names.
func readlinkFD(fd int) (string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Readlinkat(fd, "", buf)
		if err != nil {
			return "", fmt.Errorf("readlink: %w", err)
		}
		if n < len(buf) {
			return string(buf[:n]), nil
		}
		if len(buf) >= unix.PathMax {
			return "", errors.New("readlink: target too long")
		}
		buf = make([]byte, 2*len(buf))
	}
}
