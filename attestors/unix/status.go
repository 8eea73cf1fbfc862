package unix

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// maxGroups is the kernel's NGROUPS_MAX.
const maxGroups = 65536

// procStatus is what the attestor takes from /proc/<pid>/status.
type procStatus struct {
	UID    uint32   // effective
	GID    uint32   // effective
	Groups []uint32 // supplementary, in the kernel's order
}

// parseStatus parses /proc/<pid>/status strictly: the file must end with a
// newline, begin with "Name:", every line must be "Key:value" with a plain
// key, and Uid, Gid and Groups must each appear exactly once in the
// kernel's format. Anything else is an error, never a guess.
func parseStatus(b []byte) (procStatus, error) {
	var st procStatus
	if len(b) == 0 {
		return st, errors.New("empty status")
	}
	if b[len(b)-1] != '\n' {
		return st, errors.New("status truncated: no final newline")
	}
	var seenUID, seenGID, seenGroups bool
	for n := 1; len(b) > 0; n++ {
		i := bytes.IndexByte(b, '\n')
		line := b[:i]
		b = b[i+1:]
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !plainKey(line[:colon]) {
			return st, fmt.Errorf("status line %d: malformed", n)
		}
		key, value := line[:colon], line[colon+1:]
		if n == 1 && string(key) != "Name" {
			return st, errors.New("status does not begin with Name")
		}
		var err error
		switch string(key) {
		case "Uid":
			if seenUID {
				return st, errors.New("status: duplicate Uid")
			}
			seenUID = true
			st.UID, err = parseIDs(value)
		case "Gid":
			if seenGID {
				return st, errors.New("status: duplicate Gid")
			}
			seenGID = true
			st.GID, err = parseIDs(value)
		case "Groups":
			if seenGroups {
				return st, errors.New("status: duplicate Groups")
			}
			seenGroups = true
			st.Groups, err = parseGroups(value)
		}
		if err != nil {
			return procStatus{}, fmt.Errorf("status %s: %w", key, err)
		}
	}
	if !seenUID || !seenGID || !seenGroups {
		return procStatus{}, errors.New("status truncated: Uid, Gid or Groups missing")
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

// parseIDs parses "\treal\teffective\tsaved\tfilesystem" and returns the
// effective ID.
func parseIDs(v []byte) (uint32, error) {
	var ids [4]uint32
	for i := range ids {
		if len(v) == 0 || v[0] != '\t' {
			return 0, errors.New("want 4 tab-separated IDs")
		}
		v = v[1:]
		end := bytes.IndexByte(v, '\t')
		if end < 0 {
			end = len(v)
		}
		id, err := parseID(v[:end])
		if err != nil {
			return 0, err
		}
		ids[i] = id
		v = v[end:]
	}
	if len(v) != 0 {
		return 0, errors.New("want 4 tab-separated IDs")
	}
	return ids[1], nil
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
		if len(groups) == maxGroups {
			return nil, fmt.Errorf("more than %d groups", maxGroups)
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
