package peercred

import "testing"

// ParseStartTime exposes parseStartTime to the fuzz target.
var ParseStartTime = parseStartTime

// ForceFallback makes handshakes use pidfd_open instead of SO_PEERPIDFD
// until the test ends. Call it before starting a server.
func ForceFallback(t testing.TB) {
	forceFallback.Store(true)
	t.Cleanup(func() { forceFallback.Store(false) })
}

// StartTime is the start time the handshake recorded.
func StartTime(a AuthInfo) uint64 { return a.startTime }

// Release closes a's pidfd, as closing its connection does.
func (a AuthInfo) Release() { a.proc.close() }
