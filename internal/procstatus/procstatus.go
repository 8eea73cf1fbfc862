// Package procstatus reads the credentials of a process from
// /proc/<pid>/status: its real, effective, saved and filesystem user and
// group IDs and its supplementary groups. The bytes come from the kernel
// but describe a process that may be hostile (its name is in the same
// file), so parsing is strict: anything not in the kernel's exact format
// is an error, never a guess.
//
// It is shared by the unix workload attestor and agent/peercred; it must
// not import any other package of this module.
package procstatus

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"sync"
	"syscall"
)

// MaxGroups is the kernel's NGROUPS_MAX.
const MaxGroups = 65536

// MaxLen bounds what Read accepts. The file is about 1.5 KiB; 65536
// supplementary groups take at most ~720 KiB.
const MaxLen = 1 << 20

// Indexes into Status.UID and Status.GID, in the kernel's order.
const (
	Real = iota
	Effective
	Saved
	Filesystem
)

// Status is the credential part of /proc/<pid>/status.
type Status struct {
	UID    [4]uint32 // real, effective, saved set, filesystem
	GID    [4]uint32 // real, effective, saved set, filesystem
	Groups []uint32  // supplementary, in the kernel's order
}

// Equal reports whether s and o hold the same credentials, supplementary
// groups in the same order.
func (s Status) Equal(o Status) bool {
	if s.UID != o.UID || s.GID != o.GID || len(s.Groups) != len(o.Groups) {
		return false
	}
	for i, g := range s.Groups {
		if o.Groups[i] != g {
			return false
		}
	}
	return true
}

// Parse parses a status file: it must end with a newline and begin with
// "Name:", every line must be "Key:value" with a plain key, and Uid, Gid
// and Groups must each appear exactly once in the kernel's format.
func Parse(b []byte) (Status, error) {
	var st Status
	if len(b) == 0 {
		return st, errors.New("procstatus: empty status")
	}
	if b[len(b)-1] != '\n' {
		return st, errors.New("procstatus: status truncated: no final newline")
	}
	var seenUID, seenGID, seenGroups bool
	for n := 1; len(b) > 0; n++ {
		i := bytes.IndexByte(b, '\n')
		line := b[:i]
		b = b[i+1:]
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !plainKey(line[:colon]) {
			return Status{}, fmt.Errorf("procstatus: status line %d: malformed", n)
		}
		key, value := line[:colon], line[colon+1:]
		if n == 1 && string(key) != "Name" {
			return Status{}, errors.New("procstatus: status does not begin with Name")
		}
		var err error
		switch string(key) {
		case "Uid":
			if seenUID {
				return Status{}, errors.New("procstatus: duplicate Uid")
			}
			seenUID = true
			st.UID, err = parseIDs(value)
		case "Gid":
			if seenGID {
				return Status{}, errors.New("procstatus: duplicate Gid")
			}
			seenGID = true
			st.GID, err = parseIDs(value)
		case "Groups":
			if seenGroups {
				return Status{}, errors.New("procstatus: duplicate Groups")
			}
			seenGroups = true
			st.Groups, err = parseGroups(value)
		}
		if err != nil {
			return Status{}, fmt.Errorf("procstatus: %s: %w", key, err)
		}
	}
	if !seenUID || !seenGID || !seenGroups {
		return Status{}, errors.New("procstatus: status truncated: Uid, Gid or Groups missing")
	}
	return st, nil
}

func plainKey(k []byte) bool {
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// parseIDs parses "\treal\teffective\tsaved\tfilesystem".
func parseIDs(v []byte) ([4]uint32, error) {
	var ids [4]uint32
	for i := range ids {
		if len(v) == 0 || v[0] != '\t' {
			return [4]uint32{}, errors.New("want 4 tab-separated IDs")
		}
		v = v[1:]
		end := bytes.IndexByte(v, '\t')
		if end < 0 {
			end = len(v)
		}
		id, err := parseID(v[:end])
		if err != nil {
			return [4]uint32{}, err
		}
		ids[i] = id
		v = v[end:]
	}
	if len(v) != 0 {
		return [4]uint32{}, errors.New("want 4 tab-separated IDs")
	}
	return ids, nil
}

// parseGroups parses "\t" followed by space-separated IDs. Current kernels
// end the list with one space (an empty list is a lone space), older ones
// end every ID with a space; both are accepted, nothing else.
func parseGroups(v []byte) ([]uint32, error) {
	if len(v) == 0 || v[0] != '\t' {
		return nil, errors.New("missing tab")
	}
	v = v[1:]
	if n := len(v); n > 0 && v[n-1] == ' ' {
		v = v[:n-1]
	}
	if len(v) == 0 {
		return nil, nil
	}
	groups := make([]uint32, 0, bytes.Count(v, []byte{' '})+1)
	for len(v) > 0 {
		end := bytes.IndexByte(v, ' ')
		if end < 0 {
			end = len(v)
		}
		id, err := parseID(v[:end])
		if err != nil {
			return nil, err
		}
		if len(groups) == MaxGroups {
			return nil, fmt.Errorf("more than %d groups", MaxGroups)
		}
		groups = append(groups, id)
		v = v[end:]
		if len(v) > 0 {
			v = v[1:]
			if len(v) == 0 {
				return nil, errors.New("trailing separator")
			}
		}
	}
	return groups, nil
}

// parseID parses a canonical decimal uint32: digits only, no sign, no
// leading zero.
func parseID(b []byte) (uint32, error) {
	if len(b) == 0 || len(b) > 10 || (b[0] == '0' && len(b) > 1) {
		return 0, fmt.Errorf("bad ID %q", truncate(b))
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("bad ID %q", truncate(b))
		}
	}
	v, err := strconv.ParseUint(string(b), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("bad ID %q", truncate(b))
	}
	return uint32(v), nil
}

func truncate(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}

var bufs = sync.Pool{New: func() any { b := make([]byte, 4096); return &b }}

// Read reads and parses the status file at path (say /proc/42/status). It
// uses raw system calls: the os.File machinery (poller registration,
// fcntl) costs more than the read. A missing file is an error wrapping
// fs.ErrNotExist.
func Read(path string) (Status, error) {
	fd, err := OpenRead(path)
	if err != nil {
		return Status{}, err
	}
	defer syscall.Close(fd)
	return readParse(fd, path, false)
}

// OpenRead opens path read-only with a raw system call and returns the
// descriptor.
func OpenRead(path string) (int, error) {
	for {
		fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return -1, &fs.PathError{Op: "open", Path: path, Err: err}
		}
		return fd, nil
	}
}

// ReadFD reads and parses the status file open as fd (say a descriptor of
// /proc/42/status kept since the process connected) from its beginning,
// with pread(2): the kernel writes the file anew at each read from offset
// 0, so one system call gives the current credentials where Read needs
// four (open, read, read to EOF, close). A read shorter than the buffer is
// the whole file; should it not be, Parse fails on the cut (it requires
// the final newline and all of Uid, Gid and Groups). The caller must keep
// fd open for the duration. path only names the file in errors.
func ReadFD(fd int, path string) (Status, error) {
	return readParse(fd, path, true)
}

// readParse reads the status file open as fd to its end and parses it:
// with read(2) from the current offset until EOF, or, when at is set,
// with pread(2) from offset 0, where a read shorter than the buffer is
// the whole file (see ReadFD).
func readParse(fd int, path string, at bool) (Status, error) {
	bp := bufs.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 64<<10 {
			bufs.Put(bp)
		}
	}()
	b := (*bp)[:0]
	for {
		if len(b) > MaxLen {
			return Status{}, fmt.Errorf("procstatus: %s: status longer than %d bytes", path, MaxLen)
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
			*bp = b
		}
		space := b[len(b):min(cap(b), MaxLen+1)]
		var n int
		var err error
		if at {
			n, err = syscall.Pread(fd, space, int64(len(b)))
		} else {
			n, err = syscall.Read(fd, space)
		}
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return Status{}, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		b = b[:len(b)+n]
		if n == 0 || (at && n < len(space)) {
			break
		}
	}
	st, err := Parse(b)
	if err != nil {
		return Status{}, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}
