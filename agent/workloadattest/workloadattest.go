// Package workloadattest identifies the caller of an agent endpoint: it
// takes the kernel credentials of the unix-socket peer, runs every
// configured workload attestor on the caller's PID and then checks the
// process is still the one that connected (PID reuse protection).
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
	"time"

	"github.com/hallmarkid/hallmark/agent/peercred"
	"github.com/hallmarkid/hallmark/attestors"
	"github.com/hallmarkid/hallmark/registration"
)

// ErrNoCredentials means the connection carries no kernel credentials.
var ErrNoCredentials = errors.New("workloadattest: caller has no peer credentials")

// Caller is an attested caller.
type Caller struct {
	PID       int32
	UID, GID  uint32
	Selectors []registration.Selector
}

// Attestor runs workload attestors for callers.
type Attestor struct {
	attestors []attestors.WorkloadAttestor
	timeout   time.Duration
	log       *slog.Logger
}

// New returns an attestor running as in order.
func New(log *slog.Logger, as ...attestors.WorkloadAttestor) *Attestor {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Attestor{attestors: as, timeout: 30 * time.Second, log: log}
}

// Caller attests the caller of the gRPC call in ctx.
func (a *Attestor) Caller(ctx context.Context) (Caller, error) {
	info, ok := peercred.FromContext(ctx)
	if !ok {
		return Caller{}, ErrNoCredentials
	}
	sels, err := a.Attest(ctx, info.PID)
	if err != nil {
		return Caller{}, err
	}
	if err := info.StillAlive(); err != nil {
		return Caller{}, fmt.Errorf("workloadattest: caller pid %d changed during attestation: %w", info.PID, err)
	}
	// The kernel's credentials at connect() are authoritative: a process
	// that changed uid since (setuid, exec of a setuid binary) is refused
	// rather than attested as either identity.
	if want := "uid:" + strconv.FormatUint(uint64(info.UID), 10); hasOtherUID(sels, want) {
		return Caller{}, fmt.Errorf("workloadattest: caller pid %d changed uid since it connected (was %d)", info.PID, info.UID)
	}
	return Caller{PID: info.PID, UID: info.UID, GID: info.GID, Selectors: sels}, nil
}

// hasOtherUID reports whether sels carry a unix uid other than want.
func hasOtherUID(sels []registration.Selector, want string) bool {
	for _, s := range sels {
		if s.Type == "unix" && strings.HasPrefix(s.Value, "uid:") && s.Value != want {
			return true
		}
	}
	return false
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
