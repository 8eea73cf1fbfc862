package peercred

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/hallmarkid/hallmark/internal/procstatus"
)

const authType = "peercred"

// AuthInfo is what the kernel says about the process that connected: its
// PID (in the agent's PID namespace) and its effective UID and GID at the
// time of connect(), and its supplementary groups at the handshake. It
// also holds a handle on that very process and the identity it had at the
// handshake, used by Verify and StillAlive; the handle is released when
// the connection closes.
type AuthInfo struct {
	PID    int32
	UID    uint32
	GID    uint32
	Groups []uint32 // supplementary groups, in the kernel's order

	proc      *pidHandle
	startTime uint64 // /proc/<pid>/stat field 22, in clock ticks since boot
}

// AuthType returns "peercred".
func (AuthInfo) AuthType() string { return authType }

// FromContext returns the caller's AuthInfo from a gRPC server context, and
// reports whether the connection was made through TransportCredentials.
func FromContext(ctx context.Context) (AuthInfo, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return AuthInfo{}, false
	}
	a, ok := p.AuthInfo.(AuthInfo)
	return a, ok
}

// Verify returns nil if the process that connected is still running, runs
// the executable it ran at the handshake (same device and inode) and has
// the credentials it had then: real, effective, saved and filesystem UID
// and GID and supplementary groups, the effective ones equal to what the
// kernel recorded at connect(). Call it after attesting the caller from
// /proc/<pid>/... and before using the result, and again before serving a
// long-lived stream anything new: a nil return means the attestation
// described the process that connected, as it was then.
//
// Any change is an error naming it: an exec (of a setuid or setgid program
// or any other), setuid/setgid/setgroups, exit. An exec of the very same
// executable file with unchanged credentials is not seen (nothing the
// unix attestor reports changes either). An agent that may not see the
// caller's executable (not root, another uid) checks credentials only.
//
// The cost is one pread(2) of /proc/<pid>/status (a descriptor opened at
// the handshake, which names the process itself, never a later holder of
// its PID), one stat of /proc/<pid>/exe and one poll(2) of the pidfd.
func (a AuthInfo) Verify() error {
	if a.proc == nil {
		return errors.New("peercred: verify: AuthInfo does not come from a handshake")
	}
	return a.proc.verify(a.PID)
}

// StillAlive returns nil if the process that connected is still running
// under PID. Call it after attesting the caller from /proc/<pid>/...: if it
// returns nil, every read of /proc/<pid> made before the call was about the
// process that connected, not a later process that was given the same PID.
//
// It fails if the process has exited (even if not yet reaped) or if the
// connection has been closed. The handshake bound the pidfd to the process
// that held the PID (and checked its start time); while that process is
// alive no other process can hold the PID, so a liveness check of the pidfd
// made after the caller read /proc/<pid> proves those reads described the
// connecting process. This is one poll(2) instead of a /proc/<pid>/stat read
// per call.
func (a AuthInfo) StillAlive() error {
	if a.proc == nil {
		return errors.New("peercred: still alive: AuthInfo does not come from a handshake")
	}
	if err := a.proc.alive(); err != nil {
		return fmt.Errorf("peercred: still alive: pid %d: %w", a.PID, err)
	}
	return nil
}

// TransportCredentials returns server-side gRPC credentials for a unix
// socket listener: grpc.NewServer(grpc.Creds(peercred.TransportCredentials())).
// Handshakes on any other kind of connection fail.
func TransportCredentials() credentials.TransportCredentials { return transportCreds{} }

type transportCreds struct{}

func (transportCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("peercred: client handshake is not supported")
}

func (transportCreds) ServerHandshake(rawConn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	uc, ok := rawConn.(*net.UnixConn)
	if !ok {
		return nil, nil, fmt.Errorf("peercred: handshake: %T is not a unix socket connection", rawConn)
	}
	info, err := handshake(uc)
	if err != nil {
		return nil, nil, err
	}
	return &conn{Conn: uc, proc: info.proc}, info, nil
}

func (transportCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: authType}
}

func (transportCreds) Clone() credentials.TransportCredentials { return transportCreds{} }

func (transportCreds) OverrideServerName(string) error { return nil }

// handshake reads the peer's credentials and opens a pidfd on it. On error
// no file descriptor is left open.
func handshake(uc *net.UnixConn) (AuthInfo, error) {
	raw, err := uc.SyscallConn()
	if err != nil {
		return AuthInfo{}, fmt.Errorf("peercred: handshake: %w", err)
	}
	// An upper bound on the peer's start time: it connected before now.
	bound, err := bootTicks()
	if err != nil {
		return AuthInfo{}, fmt.Errorf("peercred: handshake: %w", err)
	}
	var (
		ucred           *unix.Ucred
		pidfd           = -1
		credErr, pfdErr error
	)
	ctlErr := raw.Control(func(fd uintptr) {
		ucred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if credErr != nil {
			return
		}
		if forceFallback.Load() {
			pfdErr = unix.ENOPROTOOPT
			return
		}
		pidfd, pfdErr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PEERPIDFD)
	})
	// GetsockoptInt returns 0, not -1, with an error: only a successful
	// call opened a descriptor.
	if ctlErr == nil && credErr == nil && pfdErr == nil && ucred.Pid <= 0 {
		unix.Close(pidfd)
	}
	switch {
	case ctlErr != nil:
		return AuthInfo{}, fmt.Errorf("peercred: handshake: %w", ctlErr)
	case credErr != nil:
		return AuthInfo{}, fmt.Errorf("peercred: handshake: SO_PEERCRED: %w", credErr)
	case ucred.Pid <= 0:
		// The peer is in a PID namespace we cannot see, or is no process.
		return AuthInfo{}, errors.New("peercred: handshake: peer has no PID visible to the agent")
	}

	fallback := false
	switch {
	case pfdErr == nil:
	case errors.Is(pfdErr, unix.ENOPROTOOPT):
		// Kernel older than 6.5: open a pidfd by number. A process that
		// connected and exited before this point, and whose PID was reused,
		// is caught below only if the new process started after bound.
		fallback = true
		pidfd, pfdErr = unix.PidfdOpen(int(ucred.Pid), 0)
		if pfdErr != nil {
			return AuthInfo{}, fmt.Errorf("peercred: handshake: pidfd_open(%d): %w", ucred.Pid, pfdErr)
		}
	default:
		// ESRCH/EINVAL: the peer has already exited.
		return AuthInfo{}, fmt.Errorf("peercred: handshake: SO_PEERPIDFD (pid %d): %w", ucred.Pid, pfdErr)
	}
	h := newPIDHandle(pidfd, ucred.Pid)
	info := AuthInfo{PID: ucred.Pid, UID: ucred.Uid, GID: ucred.Gid, proc: h}
	info.startTime, err = readStartTime(ucred.Pid)
	if err == nil && fallback && info.startTime > bound+1 {
		err = fmt.Errorf("started after the connection (at tick %d, bound %d): pid reused", info.startTime, bound)
	}
	if err == nil {
		err = h.record(ucred)
		if err != nil && h.alive() != nil {
			err = errors.New("process exited")
		}
	}
	if err == nil {
		// The start time, status and executable belong to the pidfd's
		// process only if that process still holds the PID now.
		err = h.alive()
	}
	if err != nil {
		h.close()
		return AuthInfo{}, fmt.Errorf("peercred: handshake: pid %d: %w", ucred.Pid, err)
	}
	info.Groups = h.creds.Groups
	return info, nil
}

// conn releases the pidfd when the connection closes.
type conn struct {
	net.Conn
	proc *pidHandle
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.proc.close()
	return err
}

// pidHandle is a pidfd shared by a connection and copies of its AuthInfo,
// with the identity the process had at the handshake.
type pidHandle struct {
	mu sync.RWMutex
	fd int // guarded by mu; -1 once closed
	// statusFD is /proc/<pid>/status, opened at the handshake and read
	// anew by each Verify; guarded by mu, -1 until opened and once closed.
	statusFD int

	// Set by the handshake, read-only after.
	statusPath, exePath string
	creds               procstatus.Status
	exe                 fileID
	exeKnown            bool // false if the agent may not see the executable
	// changed is set when the credentials at the handshake are not those
	// the kernel recorded at connect(): every Verify fails with it.
	changed error

	memo Memo
}

func newPIDHandle(fd int, pid int32) *pidHandle {
	dir := "/proc/" + strconv.FormatInt(int64(pid), 10)
	return &pidHandle{fd: fd, statusFD: -1, statusPath: dir + "/status", exePath: dir + "/exe"}
}

func (h *pidHandle) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fd >= 0 {
		unix.Close(h.fd)
		h.fd = -1
	}
	if h.statusFD >= 0 {
		unix.Close(h.statusFD)
		h.statusFD = -1
	}
}

// alive returns nil if the process is running: a pidfd polls readable once
// the process has exited, zombie or reaped.
func (h *pidHandle) alive() error {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.fd < 0 {
		return errors.New("connection closed")
	}
	fds := []unix.PollFd{{Fd: int32(h.fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("poll pidfd: %w", err)
		}
		switch {
		case n == 0:
			return nil
		case fds[0].Revents&unix.POLLNVAL != 0:
			return errors.New("poll pidfd: invalid descriptor")
		default:
			return errors.New("process exited")
		}
	}
}
