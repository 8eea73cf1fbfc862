// Package uds creates unix-socket listeners safely: the parent directory
// is created with the requested mode, a symlink at the socket path is
// refused, a stale socket is replaced, and the socket gets the requested
// permissions.
package uds

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
)

// Listen listens on path. dirMode applies to a directory it creates;
// sockMode is set on the socket.
func Listen(path string, dirMode, sockMode fs.FileMode) (net.Listener, error) {
	if path == "" {
		return nil, errors.New("uds: empty socket path")
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return nil, fmt.Errorf("uds: create %s: %w", dir, err)
	}
	if fi, err := os.Lstat(path); err == nil {
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			return nil, fmt.Errorf("uds: refusing to listen: %s is a symlink", path)
		case fi.Mode()&fs.ModeSocket != 0:
			if err := os.Remove(path); err != nil {
				return nil, fmt.Errorf("uds: remove stale socket: %w", err)
			}
		default:
			return nil, fmt.Errorf("uds: refusing to listen: %s exists and is not a socket", path)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("uds: listen: %w", err)
	}
	if err := os.Chmod(path, sockMode); err != nil {
		l.Close()
		return nil, fmt.Errorf("uds: chmod: %w", err)
	}
	return l, nil
}
