package uds

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/hallmarkid/hallmark/internal/pidlock"
)

// InUseError reports that another process serves the socket path.
type InUseError struct {
	Path string
	PID  int // 0 when unknown (a process that holds no lock file answered)
}

func (e *InUseError) Error() string {
	if e.PID > 0 {
		return fmt.Sprintf("uds: another process (pid %d) is serving %s", e.PID, e.Path)
	}
	return fmt.Sprintf("uds: another process is serving %s", e.Path)
}

// probeTimeout bounds the connect that tells a live socket from a stale one.
const probeTimeout = 2 * time.Second

// Listen listens on path, a unix socket in a directory that this process
// owns and that grants nobody more than dirMode (it is created with
// dirMode when missing), below directories owned by root or this process
// that nobody else may write to. The socket gets sockMode. An existing
// socket is replaced only when it is stale; one that answers is an
// *InUseError, and so is a lock file (path + ".lock") held by another
// process. Closing the listener removes the socket it created and
// releases the lock.
func Listen(path string, dirMode, sockMode fs.FileMode) (net.Listener, error) {
	if path == "" {
		return nil, errors.New("uds: empty socket path")
	}
	if dirMode&^fs.ModePerm != 0 || dirMode&0o022 != 0 || dirMode&0o700 != 0o700 {
		return nil, fmt.Errorf("uds: directory mode %04o: want owner rwx and no write for group or others", dirMode)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("uds: %w", err)
	}
	euid := uint32(os.Geteuid())
	p := policy{trusted: []uint32{0, euid}, create: dirMode,
		last: func(dir string, st *syscall.Stat_t) error {
			switch {
			case st.Uid != euid:
				return fmt.Errorf("directory %s is owned by uid %d (mode %s), not by this process (uid %d): another user may have created it",
					dir, st.Uid, modeString(st), euid)
			case fs.FileMode(st.Mode)&fs.ModePerm&^dirMode != 0:
				what := "more than"
				if st.Mode&0o022 != 0 {
					what = "write access to group or others, more than"
				}
				return fmt.Errorf("directory %s (owner uid %d, mode %s) grants %s %04o (chmod %o %s)",
					dir, st.Uid, modeString(st), what, dirMode, dirMode, dir)
			}
			return nil
		}}
	dir, err := p.walk(filepath.Dir(abs))
	if err != nil {
		return nil, fmt.Errorf("uds: refusing to listen on %s: %w", path, err)
	}
	sock := filepath.Join(dir, filepath.Base(abs))
	lock, err := pidlock.Acquire(sock + ".lock")
	var held *pidlock.HeldError
	if errors.As(err, &held) {
		return nil, &InUseError{Path: path, PID: held.PID}
	}
	if err != nil {
		return nil, fmt.Errorf("uds: %w", err)
	}
	l, err := listenLocked(path, sock, sockMode)
	if err != nil {
		lock.Release()
		return nil, err
	}
	l.lock = lock
	return l, nil
}

func listenLocked(path, sock string, sockMode fs.FileMode) (*listener, error) {
	if fi, err := os.Lstat(sock); err == nil {
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			return nil, fmt.Errorf("uds: refusing to listen: %s is a symlink", path)
		case fi.Mode()&fs.ModeSocket == 0:
			return nil, fmt.Errorf("uds: refusing to listen: %s exists and is not a socket", path)
		}
		if err := removeStale(path, sock); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("uds: %w", err)
	}
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("uds: listen: %w", err)
	}
	// Close removes the socket only if it is still ours (see listener.Close).
	ul.SetUnlinkOnClose(false)
	l := &listener{UnixListener: ul, path: sock}
	fi, err := os.Lstat(sock)
	if err == nil {
		l.dev, l.ino = uint64(stat(fi).Dev), uint64(stat(fi).Ino)
		err = os.Chmod(sock, sockMode)
	}
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("uds: %w", err)
	}
	return l, nil
}

// removeStale removes the socket at sock unless something answers on it.
func removeStale(path, sock string) error {
	c, err := net.DialTimeout("unix", sock, probeTimeout)
	switch {
	case err == nil:
		c.Close()
		return &InUseError{Path: path}
	case errors.Is(err, syscall.ECONNREFUSED):
		// Nobody listens: a socket left by a process that died.
	case errors.Is(err, syscall.ENOENT):
		return nil
	case errors.Is(err, syscall.EAGAIN):
		return &InUseError{Path: path} // a listener with a full backlog
	default:
		return fmt.Errorf("uds: refusing to replace %s: cannot tell whether it is in use: %w", path, err)
	}
	if err := os.Remove(sock); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("uds: remove stale socket: %w", err)
	}
	return nil
}

// listener removes its socket on Close only if the path still names the
// socket it created (another process may have replaced it since), then
// releases its lock.
type listener struct {
	*net.UnixListener
	path     string
	dev, ino uint64
	lock     *pidlock.Lock
	once     sync.Once
}

func (l *listener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() {
		if fi, serr := os.Lstat(l.path); serr == nil {
			if st := stat(fi); st != nil && uint64(st.Dev) == l.dev && uint64(st.Ino) == l.ino {
				os.Remove(l.path)
			}
		}
		l.lock.Release()
	})
	return err
}
