package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/hallmarkid/hallmark/internal/pidlock"
	"github.com/hallmarkid/hallmark/internal/uds"
)

// DataDirLockFile is the file in data_dir a running server holds locked
// (flock) and writes its PID to.
const DataDirLockFile = "hallmark-server.lock"

// lockDataDir creates data_dir (0700) if needed and locks it for the
// server's life: a second server on the same data_dir would share the
// SQLite database and the keys behind the first one's caches.
func lockDataDir(dir string) (*pidlock.Lock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("server: data_dir: %w", err)
	}
	l, err := pidlock.Acquire(filepath.Join(dir, DataDirLockFile))
	var held *pidlock.HeldError
	if errors.As(err, &held) {
		return nil, fmt.Errorf("server: data_dir %s is in use by another hallmark-server (%s, see %s); "+
			"each server needs its own data_dir (HA servers share only the PostgreSQL database)", dir, holder(held.PID), held.Path)
	}
	if err != nil {
		return nil, fmt.Errorf("server: data_dir: %w", err)
	}
	return l, nil
}

func holder(pid int) string {
	if pid > 0 {
		return fmt.Sprintf("pid %d", pid)
	}
	return "pid unknown"
}

// listenAdmin listens on the admin socket: owner-only directory and socket.
func listenAdmin(path string) (net.Listener, error) {
	l, err := uds.Listen(path, 0o700, 0o600)
	var inUse *uds.InUseError
	if errors.As(err, &inUse) {
		who := ""
		if inUse.PID > 0 {
			who = fmt.Sprintf(" (pid %d)", inUse.PID)
		}
		return nil, fmt.Errorf("server: admin socket: another hallmark-server is serving %s%s; stop it first or give this server its own socket_path", path, who)
	}
	if err != nil {
		return nil, fmt.Errorf("server: admin socket: %w", err)
	}
	return l, nil
}
