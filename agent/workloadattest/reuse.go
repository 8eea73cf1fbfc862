package workloadattest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hallmarkid/hallmark/registration"
)

// Reusing an attestation. A stock client makes each Workload API call a
// new stream on one connection, and attesting the caller anew cost more
// than the rest of the call. A connection's peercred handshake recorded
// who connected (pidfd, executable, credentials) and AuthInfo.Verify
// checks that on every call; an attestor's selectors can also depend on
// things that change without an exec or a change of credentials (the
// cgroup a process is in, the executable's path after a rename, user
// names, the kubelet's pod list). So an attestation is reused on a
// connection only if:
//   - every attestor is reusable (implements reusable); one that is not
//     makes every call attest anew;
//   - every attestor's fingerprint, read on this call, equals the one read
//     before the stored attestation ran (k8s: the whole /proc/<pid>/cgroup;
//     unix with path discovery: the executable's path and file version);
//   - Verify passes on this call (after the fingerprints were read);
//   - it is younger than the least ReuseFor of the attestors.
// Failures are never stored.

// reusable is implemented by workload attestors whose selectors for a
// process may be reused while the process keeps the kernel identity it
// connected with and the same fingerprint.
type reusable interface {
	// Fingerprint returns, cheaply, everything the attestor's selectors
	// for pid depend on that can change while the process keeps its PID,
	// executable and credentials: equal fingerprints mean Attest would
	// return the same selectors, up to data from elsewhere that ages
	// within ReuseFor.
	Fingerprint(ctx context.Context, pid int32) (string, error)
	// ReuseFor bounds how long an attestation may be reused.
	ReuseFor() time.Duration
}

// errNoReuse marks a call whose attestation is not to be stored.
var errNoReuse = errors.New("workloadattest: attestation not reusable")

// attestation is what a connection's peercred.Memo holds.
type attestation struct {
	owner        *Attestor // the attestor set that made it
	fingerprints []string  // one per attestor, read before attesting
	selectors    []registration.Selector
	expires      time.Time
}

// reusable reports whether m can answer a call to a whose fingerprints are
// fps (Verify still to be checked).
func (m *attestation) reusable(a *Attestor, fps []string) bool {
	return m != nil && m.owner == a && a.now().Before(m.expires) && slices.Equal(m.fingerprints, fps)
}

// fingerprints returns every attestor's fingerprint of pid.
func (a *Attestor) fingerprints(ctx context.Context, pid int32) ([]string, error) {
	out := make([]string, len(a.attestors))
	for i, w := range a.attestors {
		fp, err := w.(reusable).Fingerprint(ctx, pid)
		if err != nil {
			return nil, fmt.Errorf("workloadattest: %s: fingerprint: %w", w.Name(), err)
		}
		out[i] = fp
	}
	return out, nil
}

// Attestations returns how many times Caller ran the attestors; the other
// successful calls reused their connection's attestation.
func (a *Attestor) Attestations() int64 { return a.attested.Load() }
