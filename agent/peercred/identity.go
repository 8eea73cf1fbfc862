package peercred

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/hallmarkid/hallmark/internal/procstatus"
)

// fileID identifies a file: device and inode.
type fileID struct {
	dev, ino uint64
}

func (f fileID) String() string {
	return fmt.Sprintf("%d:%d inode %d", unix.Major(f.dev), unix.Minor(f.dev), f.ino)
}

// statExe returns the identity of the file /proc/<pid>/exe points to.
func statExe(path string) (fileID, error) {
	var st unix.Stat_t
	for {
		err := unix.Stat(path, &st)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fileID{}, &fs.PathError{Op: "stat", Path: path, Err: err}
		}
		return fileID{dev: st.Dev, ino: st.Ino}, nil
	}
}

// record reads the process's credentials and executable at the handshake
// and compares the effective IDs with those the kernel recorded at
// connect(). A difference is not a handshake error: it is kept and every
// Verify fails with it, so the caller gets a clear PermissionDenied.
func (h *pidHandle) record(ucred *unix.Ucred) error {
	fd, err := procstatus.OpenRead(h.statusPath)
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.statusFD = fd // closed with the pidfd
	h.mu.Unlock()
	st, err := h.readStatus()
	if err != nil {
		return err
	}
	h.creds = st
	exe, err := statExe(h.exePath)
	switch {
	case err == nil:
		h.exe, h.exeKnown = exe, true
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		// Only root (CAP_SYS_PTRACE) or the process's own uid may follow
		// /proc/<pid>/exe. Such an agent cannot produce path: or sha256:
		// selectors for the caller either; credentials are still checked.
	default:
		return err
	}
	if e, g := st.UID[procstatus.Effective], st.GID[procstatus.Effective]; e != ucred.Uid || g != ucred.Gid {
		h.changed = fmt.Errorf("effective uid/gid %d/%d at connect(), %d/%d when the agent accepted the connection",
			ucred.Uid, ucred.Gid, e, g)
	}
	return nil
}

// readStatus reads the process's credentials through the status file
// descriptor opened at the handshake. The descriptor names the process
// itself, not whatever holds its PID: once the process has exited, reads
// fail (ESRCH) even if the PID was reused.
func (h *pidHandle) readStatus() (procstatus.Status, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.statusFD < 0 {
		return procstatus.Status{}, errors.New("connection closed")
	}
	return procstatus.ReadFD(h.statusFD, h.statusPath)
}

// verify implements AuthInfo.Verify.
func (h *pidHandle) verify(pid int32) error {
	if h.changed != nil {
		return changedError(pid, h.changed.Error())
	}
	// Read first, then check the pidfd: if the process is alive after the
	// reads, no other process can have held the PID during them.
	st, stErr := h.readStatus()
	var exe fileID
	var exeErr error
	if h.exeKnown {
		exe, exeErr = statExe(h.exePath)
	}
	if err := h.alive(); err != nil {
		return fmt.Errorf("peercred: caller pid %d: %w", pid, err)
	}
	switch {
	case stErr != nil:
		return fmt.Errorf("peercred: caller pid %d: %w", pid, stErr)
	case !st.Equal(h.creds):
		return changedError(pid, describeChange(h.creds, st))
	case errors.Is(exeErr, unix.EACCES), errors.Is(exeErr, unix.EPERM):
		// Visible at the handshake, hidden now: the process became
		// non-dumpable (exec of a setuid/setgid program, or
		// prctl(PR_SET_DUMPABLE, 0)) and the agent lacks CAP_SYS_PTRACE.
		return changedError(pid, "its executable is no longer visible to the agent (it became non-dumpable: "+
			"a workload that does so should do it before connecting)")
	case exeErr != nil:
		return fmt.Errorf("peercred: caller pid %d: %w", pid, exeErr)
	case exe != h.exe:
		return changedError(pid, fmt.Sprintf("executable is now %s, was %s (exec)", exe, h.exe))
	}
	return nil
}

// ErrChanged is wrapped by Verify's errors when the caller is alive but is
// no longer what it was when it connected.
var ErrChanged = errors.New("changed since it connected")

func changedError(pid int32, what string) error {
	return fmt.Errorf("peercred: caller pid %d %w: %s", pid, ErrChanged, what)
}

var idNames = [4]string{"real", "effective", "saved", "filesystem"}

// describeChange names every credential that differs between was and now.
func describeChange(was, now procstatus.Status) string {
	var parts []string
	for i, name := range idNames {
		if was.UID[i] != now.UID[i] {
			parts = append(parts, fmt.Sprintf("%s uid %d → %d", name, was.UID[i], now.UID[i]))
		}
	}
	for i, name := range idNames {
		if was.GID[i] != now.GID[i] {
			parts = append(parts, fmt.Sprintf("%s gid %d → %d", name, was.GID[i], now.GID[i]))
		}
	}
	if !(procstatus.Status{Groups: was.Groups}).Equal(procstatus.Status{Groups: now.Groups}) {
		parts = append(parts, fmt.Sprintf("supplementary groups %s → %s", groupList(was.Groups), groupList(now.Groups)))
	}
	return strings.Join(parts, ", ")
}

// groupList renders at most 8 groups.
func groupList(gs []uint32) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, g := range gs {
		if i == 8 {
			fmt.Fprintf(&b, " … %d more", len(gs)-i)
			break
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatUint(uint64(g), 10))
	}
	b.WriteByte(']')
	return b.String()
}
