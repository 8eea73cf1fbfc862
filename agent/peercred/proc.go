package peercred

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// forceFallback makes handshakes use pidfd_open as on kernels without
// SO_PEERPIDFD. Set by tests only.
var forceFallback atomic.Bool

// maxStatLen bounds what is read from /proc/<pid>/stat; the kernel's line
// is far shorter (comm is at most 64 bytes).
const maxStatLen = 4096

// readStartTime returns field 22 of /proc/<pid>/stat: the time the process
// started, in clock ticks after boot. Raw system calls: os.File's poller
// set-up costs more than the read itself.
func readStartTime(pid int32) (uint64, error) {
	path := "/proc/" + strconv.FormatInt(int64(pid), 10) + "/stat"
	var fd int
	var err error
	for {
		fd, err = unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return 0, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var buf [maxStatLen]byte
	n := 0
	for {
		m, err := unix.Read(fd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if m == 0 {
			break
		}
		n += m
		if n == len(buf) {
			return 0, errors.New("stat file too long")
		}
	}
	return parseStartTime(buf[:n])
}

// parseStartTime extracts the start time from a /proc/<pid>/stat line:
// "pid (comm) state ppid ...". comm may contain spaces and parentheses, so
// the fields are counted from the last ')'.
func parseStartTime(b []byte) (uint64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 > len(b) || b[i+1] != ' ' {
		return 0, errors.New("malformed stat")
	}
	rest := b[i+2:]
	// Fields after comm start at field 3 (state); starttime is field 22.
	for range 22 - 3 {
		j := bytes.IndexByte(rest, ' ')
		if j < 0 {
			return 0, errors.New("malformed stat: too few fields")
		}
		rest = rest[j+1:]
	}
	if j := bytes.IndexByte(rest, ' '); j >= 0 {
		rest = rest[:j]
	}
	v, err := strconv.ParseUint(string(rest), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("malformed stat: start time: %w", err)
	}
	return v, nil
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times; it is 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// bootTicks returns CLOCK_BOOTTIME in clock ticks, the clock of the start
// time in /proc/<pid>/stat.
func bootTicks() (uint64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0, fmt.Errorf("clock_gettime: %w", err)
	}
	return uint64(ts.Sec)*clockTicks + uint64(ts.Nsec)/(1e9/clockTicks), nil
}
