// Package rotation is the schedule both signing authorities of the server
// follow (the X.509 CA in server/ca and the JWT keys in server/jwtsigner,
// both rotated by the engine in server/authority):
// when to prepare and publish a successor, when it may become active, how
// often servers sharing a datastore re-read the shared state, and how long
// a revocation must be remembered.
//
// It holds policy only: no keys, no I/O. It must not import server/ or
// agent/ packages.
package rotation

import "time"

// The schedule, as fractions of the active authority's lifetime: its
// successor is prepared (and published in the bundle) at 1/2, and becomes
// active at 5/6 — but never less than 1/12 of the lifetime after this
// server published it, unless the active authority expires first.
const (
	prepareNum, prepareDen   = 1, 2
	activateNum, activateDen = 5, 6
	minPublishDen            = 12
)

// Schedule returns when to prepare the successor of an authority valid
// from notBefore to notAfter, and when a successor this server published
// at published may become active.
func Schedule(notBefore, notAfter, published time.Time) (prepare, activate time.Time) {
	life := notAfter.Sub(notBefore)
	prepare = notBefore.Add(life / prepareDen * prepareNum)
	activate = notBefore.Add(life / activateDen * activateNum)
	if p := published.Add(life / minPublishDen); p.After(activate) {
		activate = p
	}
	return prepare, activate
}

// PollInterval is how often a rotating authority re-reads the shared
// state, and how soon it retries a failed step: 1/50 of the active
// lifetime, within [100ms, 30s].
func PollInterval(life time.Duration) time.Duration {
	return min(max(life/50, 100*time.Millisecond), 30*time.Second)
}

// LiveRevoked returns the entries of revoked (ID → expiry) that have not
// expired at now, nil when none: past its expiry an authority cannot come
// back anyway, so its revocation need not be remembered.
func LiveRevoked(revoked map[string]time.Time, now time.Time) map[string]time.Time {
	var out map[string]time.Time
	for id, exp := range revoked {
		if now.Before(exp) {
			if out == nil {
				out = map[string]time.Time{}
			}
			out[id] = exp
		}
	}
	return out
}
