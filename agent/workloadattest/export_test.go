package workloadattest

import "time"

// Attestations returns how many full attestations a has run.
func Attestations(a *Attestor) int64 { return a.attested.Load() }

// SetClock replaces a's clock.
func SetClock(a *Attestor, now func() time.Time) { a.now = now }
