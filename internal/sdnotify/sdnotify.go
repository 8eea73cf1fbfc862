// Package sdnotify tells systemd about a Type=notify service's state, as
// sd_notify(3) does: one datagram to the unix socket $NOTIFY_SOCKET names
// (a path, or an abstract name starting with "@"). The daemons send
// READY=1 once they serve, and STOPPING=1 when they begin to stop. It
// imports nothing of Hallmark.
package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"os"
)

// Ready tells systemd that the service is up (READY=1).
func Ready() error { return Notify("READY=1") }

// Stopping tells systemd that the service is stopping (STOPPING=1).
func Stopping() error { return Notify("STOPPING=1") }

// Notify sends state to $NOTIFY_SOCKET; without it (not started by systemd
// with Type=notify) it does nothing.
func Notify(state string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	if addr[0] != '/' && addr[0] != '@' {
		return fmt.Errorf("sdnotify: NOTIFY_SOCKET %q: only unix socket paths and abstract names are supported", addr)
	}
	// Go's net package maps a leading "@" to an abstract socket name.
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	defer conn.Close()
	n, err := conn.Write([]byte(state))
	if err == nil && n != len(state) {
		err = errors.New("short write")
	}
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	return nil
}
