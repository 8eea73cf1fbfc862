package postgres

import "time"

// SetWatchIdle shortens the listener's idle check for a test and returns
// a function restoring it.
func SetWatchIdle(d time.Duration) (restore func()) {
	old := watchIdle
	watchIdle = d
	return func() { watchIdle = old }
}
