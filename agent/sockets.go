package agent

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"

	"github.com/hallmarkid/hallmark/internal/pidlock"
	"github.com/hallmarkid/hallmark/internal/uds"
)

// DataDirLockFile is the file in data_dir a running agent holds locked
// (flock) and writes its PID to.
const DataDirLockFile = "hallmark-agent.lock"

// lockDataDir locks data_dir (which exists) for the agent's life: two
// agents on one data_dir would share, and overwrite, one agent key, SVID
// and TPM attestation key.
func lockDataDir(dir string) (*pidlock.Lock, error) {
	l, err := pidlock.Acquire(filepath.Join(dir, DataDirLockFile))
	var held *pidlock.HeldError
	if errors.As(err, &held) {
		who := "pid unknown"
		if held.PID > 0 {
			who = fmt.Sprintf("pid %d", held.PID)
		}
		return nil, fmt.Errorf("agent: data_dir %s is in use by another hallmark-agent (%s, see %s); each agent needs its own data_dir",
			dir, who, held.Path)
	}
	if err != nil {
		return nil, fmt.Errorf("agent: data_dir: %w", err)
	}
	return l, nil
}

// listenPublic listens on a socket every local workload may reach: the
// directory is 0755 (or stricter) and owned by the agent, the socket 0777.
// what names the socket in errors.
func listenPublic(what, path string) (net.Listener, error) {
	l, err := uds.Listen(path, 0o755, 0o777)
	var inUse *uds.InUseError
	if errors.As(err, &inUse) {
		who := ""
		if inUse.PID > 0 {
			who = fmt.Sprintf(" (pid %d)", inUse.PID)
		}
		return nil, fmt.Errorf("agent: %s: another hallmark-agent is serving %s%s; stop it first or give this agent its own socket_path", what, path, who)
	}
	if err != nil {
		return nil, fmt.Errorf("agent: %s: %w", what, err)
	}
	return l, nil
}
