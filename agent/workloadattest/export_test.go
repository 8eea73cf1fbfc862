package workloadattest

import "time"

// SetClock replaces a's clock.
func SetClock(a *Attestor, now func() time.Time) { a.now = now }
