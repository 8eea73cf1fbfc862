// Package workloadattest identifies the caller of an agent endpoint: it
// takes the kernel credentials of the unix-socket peer, runs every
// configured workload attestor on the caller's PID and then checks the
// process is still the one that connected, unchanged (PID reuse, exec,
// setuid, setgid: see agent/peercred). A connection's attestation is
// reused by its later calls while that check and every attestor's
// fingerprint say nothing it depends on changed (reuse.go).
//
// It is shared by the Workload API and SDS; it must not import either.
package workloadattest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hallmarkid/hallmark/agent/peercred"
	"github.com/hallmarkid/hallmark/attestors"
	"github.com/hallmarkid/hallmark/registration"
)

// ErrNoCredentials means the connection carries no kernel credentials.
var ErrNoCredentials = errors.New("workloadattest: caller has no peer credentials")

// Caller is an attested caller.
type Caller struct {
	PID      int32
	UID, GID uint32
	// Groups are the caller's supplementary groups.
	Groups []uint32
	// Selectors may be shared with other calls on the same connection
	// (see Attestor.Caller): read them, never modify them.
	Selectors []registration.Selector

	info peercred.AuthInfo
}

// Verify returns nil if the caller is still the process that connected,
// unchanged (see peercred.AuthInfo.Verify). Long-lived streams call it
// before each push; a Caller that does not come from Attestor.Caller fails.
func (c Caller) Verify() error {
	if err := c.info.Verify(); err != nil {
		return fmt.Errorf("workloadattest: %w", err)
	}
	return nil
}

// Attestor runs workload attestors for callers.
type Attestor struct {
	attestors []attestors.WorkloadAttestor
	timeout   time.Duration
	log       *slog.Logger
	failed    func(reason string)
	// reuseFor is the least ReuseFor of the attestors, 0 (never reuse)
	// unless every attestor is reusable.
	reuseFor time.Duration
	now      func() time.Time
	attested atomic.Int64 // full attestations run, for tests
}

// Failure reasons passed to OnFailure's function.
const (
	ReasonNoCredentials  = "no_credentials"  // the connection carries no kernel credentials
	ReasonCallerChanged  = "caller_changed"  // the process exited, exec'd or changed ids meanwhile
	ReasonTimeout        = "timeout"         // an attestor did not answer in time
	ReasonAttestorFailed = "attestor_failed" // an attestor failed
)

// OnFailure makes Caller report each failure's reason (one of the Reason
// constants) to fn, e.g. hallmark_workload_attestation_failures_total. It
// returns a.
func (a *Attestor) OnFailure(fn func(reason string)) *Attestor {
	a.failed = fn
	return a
}

// Caller attests the caller of the gRPC call in ctx. The selectors are
// returned only if, after the attestors ran, the process is still the one
// that connected with the credentials and executable it had then, and the
// uid and gid the attestors saw are those the kernel gave at connect().
func (a *Attestor) Caller(ctx context.Context) (Caller, error) {
	c, reason, err := a.caller(ctx)
	if err != nil && a.failed != nil {
		a.failed(reason)
	}
	return c, err
}

// New returns an attestor running as in order.
func New(log *slog.Logger, as ...attestors.WorkloadAttestor) *Attestor {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Attestor{attestors: as, timeout: 30 * time.Second, log: log, now: time.Now}
	for i, w := range as {
		r, ok := w.(reusable)
		if !ok || r.ReuseFor() <= 0 {
			a.reuseFor = 0
			break
		}
		if i == 0 || r.ReuseFor() < a.reuseFor {
			a.reuseFor = r.ReuseFor()
		}
	}
	return a
}

// caller is Caller, also saying why it failed (a Reason constant).
func (a *Attestor) caller(ctx context.Context) (Caller, string, error) {
	info, ok := peercred.FromContext(ctx)
	if !ok {
		return Caller{}, ReasonNoCredentials, ErrNoCredentials
	}
	memo := info.Memo()
	var fps []string
	var fpErr error = errNoReuse
	if a.reuseFor > 0 && memo != nil {
		// Read before attesting: a change after these reads makes the
		// next call's fingerprints differ, never the stored ones lie.
		fps, fpErr = a.fingerprints(ctx, info.PID)
		if m, _ := memo.Load().(*attestation); fpErr == nil && m.reusable(a, fps) {
			// The fingerprints were read before Verify's liveness
			// check, so they are the connected process's; Verify says
			// its credentials and executable are those it connected
			// with, as they were when m was attested.
			if err := info.Verify(); err != nil {
				return Caller{}, ReasonCallerChanged, fmt.Errorf("workloadattest: %w", err)
			}
			return a.callerOf(info, m.selectors), "", nil
		}
	}
	started := a.now()
	a.attested.Add(1)
	sels, err := a.Attest(ctx, info.PID)
	if err != nil {
		if verr := info.Verify(); verr != nil {
			// The attestor failed because the process changed or left:
			// say that rather than what the attestor tripped over.
			return Caller{}, ReasonCallerChanged, fmt.Errorf("workloadattest: %w", verr)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return Caller{}, ReasonTimeout, err
		}
		return Caller{}, ReasonAttestorFailed, err
	}
	if err := info.Verify(); err != nil {
		return Caller{}, ReasonCallerChanged, fmt.Errorf("workloadattest: %w", err)
	}
	// The kernel's credentials at connect() are authoritative: attested
	// IDs that differ (the process changed between the attestors' reads
	// and Verify's, and back) are refused rather than served as either.
	for _, want := range []struct{ kind, value string }{
		{"uid:", "uid:" + strconv.FormatUint(uint64(info.UID), 10)},
		{"gid:", "gid:" + strconv.FormatUint(uint64(info.GID), 10)},
	} {
		if other, ok := otherSelector(sels, want.kind, want.value); ok {
			return Caller{}, ReasonCallerChanged, fmt.Errorf("workloadattest: caller pid %d %w: attested unix:%s, the kernel said %s at connect()",
				info.PID, peercred.ErrChanged, other, want.value)
		}
	}
	if fpErr == nil {
		memo.Store(&attestation{owner: a, fingerprints: fps, selectors: sels, expires: started.Add(a.reuseFor)})
	}
	return a.callerOf(info, sels), "", nil
}

func (a *Attestor) callerOf(info peercred.AuthInfo, sels []registration.Selector) Caller {
	return Caller{PID: info.PID, UID: info.UID, GID: info.GID, Groups: info.Groups, Selectors: sels, info: info}
}

// otherSelector returns the value of a unix selector of kind (uid: or
// gid:) in sels other than want, and reports whether there is one.
func otherSelector(sels []registration.Selector, kind, want string) (string, bool) {
	for _, s := range sels {
		if s.Type == "unix" && strings.HasPrefix(s.Value, kind) && s.Value != want {
			return s.Value, true
		}
	}
	return "", false
}

// Attest runs every attestor on pid and returns the union of selectors.
// Any attestor error fails the whole attestation (fail closed). Attestors
// that may wait (on a kubelet, say) run under the attestation deadline;
// those that only read local kernel state run without one, which saves a
// timer per Workload API call.
func (a *Attestor) Attest(ctx context.Context, pid int32) ([]registration.Selector, error) {
	var out []registration.Selector
	bounded := ctx
	for _, w := range a.attestors {
		wctx := ctx
		if l, ok := w.(localAttestor); !ok || !l.Local() {
			if bounded == ctx {
				var cancel context.CancelFunc
				bounded, cancel = context.WithTimeout(ctx, a.timeout)
				defer cancel()
			}
			wctx = bounded
		}
		sels, err := w.Attest(wctx, pid)
		if err != nil {
			return nil, fmt.Errorf("workloadattest: %s: %w", w.Name(), err)
		}
		out = append(out, sels...)
	}
	return out, nil
}

// localAttestor is implemented by attestors that only read local kernel
// state and never block (unix); Local reports whether that holds.
type localAttestor interface{ Local() bool }
