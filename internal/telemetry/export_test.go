package telemetry

import "time"

// SetReadyCacheFor changes how long /ready answers are reused and returns
// a function restoring it.
func SetReadyCacheFor(d time.Duration) func() {
	old := readyCacheFor
	readyCacheFor = d
	return func() { readyCacheFor = old }
}
