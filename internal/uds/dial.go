package uds

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// CheckDial reports whether this process can trust the socket at path
// before it dials it, and returns the path to dial (symlinks above the
// socket's directory resolved). The socket, its directory and every
// directory above must be owned by root or by this process's user
// (real or effective uid); no directory on the way may be writable by
// group or others (a sticky ancestor such as /tmp excepted), and neither
// the socket nor its directory may be a symlink. A missing socket is an
// error that wraps fs.ErrNotExist.
func CheckDial(path string) (string, error) {
	return checkDial(path, []uint32{0, uint32(os.Getuid()), uint32(os.Geteuid())})
}

func checkDial(path string, trusted []uint32) (string, error) {
	if path == "" {
		return "", errors.New("uds: empty socket path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("uds: %w", err)
	}
	p := policy{trusted: trusted}
	p.last = func(dir string, st *syscall.Stat_t) error {
		if err := p.checkAncestor(dir, st); err != nil {
			return err
		}
		if st.Mode&0o022 != 0 {
			return fmt.Errorf("directory %s (owner uid %d, mode %s) is writable by group or others, who could put their own socket there",
				dir, st.Uid, modeString(st))
		}
		return nil
	}
	dir, err := p.walk(filepath.Dir(abs))
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("uds: %w", err)
	}
	if err != nil {
		return "", fmt.Errorf("uds: refusing to talk to %s: %w", path, err)
	}
	sock := filepath.Join(dir, filepath.Base(abs))
	fi, err := os.Lstat(sock)
	if err != nil {
		return "", fmt.Errorf("uds: %w", err)
	}
	st := stat(fi)
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return "", fmt.Errorf("uds: refusing to talk to %s: it is a symlink", path)
	case fi.Mode()&fs.ModeSocket == 0:
		return "", fmt.Errorf("uds: refusing to talk to %s: it is not a socket", path)
	case st == nil:
		return "", fmt.Errorf("uds: %s: no owner information", path)
	case !p.trustedUID(st.Uid):
		return "", fmt.Errorf("uds: refusing to talk to %s: the socket is owned by uid %d; only %s may own it "+
			"(if uid %d runs the daemon, run this command as that user)", path, st.Uid, p.trustedNames(), st.Uid)
	}
	return sock, nil
}
