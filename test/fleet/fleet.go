package fleet

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hallmarkid/hallmark/agent/client"
	"github.com/hallmarkid/hallmark/agent/manager"
	"github.com/hallmarkid/hallmark/attestors/jointoken"
)

// Config configures a Fleet.
type Config struct {
	// Address is the server's (or a balancer's) Node API address.
	Address     string
	TrustDomain spiffeid.TrustDomain
	// Bundle authenticates the server (from `bundle show`, out of band).
	Bundle []*x509.Certificate
	// Tokens holds one join token per agent.
	Tokens []string
	// BatchSize bounds one BatchSignX509SVID call (the agent's default,
	// 1000, when zero).
	BatchSize int
}

// Fleet is a set of simulated agents in one process.
type Fleet struct {
	cfg    Config
	Agents []*Agent

	signed, renewals, reconnects, busy   atomic.Int64
	attestBusy, syncBusy                 atomic.Int64
	syncNotListening                     atomic.Int64
	otherMu                              sync.Mutex // guards otherErrs
	otherErrs                            map[string]int
	attestErrors, syncErrors, signErrors atomic.Int64
	renewErrors, unavailable             atomic.Int64
	errMu                                sync.Mutex // guards firstErr
	firstErr                             error
	wg                                   sync.WaitGroup
	cancel                               context.CancelFunc
}

// New returns a fleet of len(cfg.Tokens) agents; Start starts them.
func New(cfg Config) (*Fleet, error) {
	if cfg.Address == "" || cfg.TrustDomain.IsZero() || len(cfg.Bundle) == 0 {
		return nil, errors.New("fleet: address, trust domain and bundle are required")
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1000
	}
	f := &Fleet{cfg: cfg}
	for i, tok := range cfg.Tokens {
		id, err := jointoken.AgentID(cfg.TrustDomain, tok)
		if err != nil {
			return nil, fmt.Errorf("fleet: agent %d: %w", i, err)
		}
		c, err := client.New(client.Config{Address: cfg.Address, TrustDomain: cfg.TrustDomain, Bundle: cfg.Bundle})
		if err != nil {
			return nil, fmt.Errorf("fleet: agent %d: %w", i, err)
		}
		f.Agents = append(f.Agents, &Agent{
			Index: i, ID: id, token: tok, fl: f, c: c, mintKick: make(chan struct{}, 1),
			entries: make(map[string]int64), svids: make(map[string]svidState), changed: make(chan struct{}),
		})
	}
	return f, nil
}

// Start starts every agent at once.
func (f *Fleet) Start(ctx context.Context) {
	ctx, f.cancel = context.WithCancel(ctx)
	for _, a := range f.Agents {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			a.run(ctx)
		}()
	}
}

// Stop stops every agent and closes its connection.
func (f *Fleet) Stop() {
	if f.cancel != nil {
		f.cancel()
	}
	f.wg.Wait()
	for _, a := range f.Agents {
		a.c.Close()
	}
}

// Counts are the fleet's counters.
type Counts struct {
	// Signed counts workload SVIDs signed for the fleet.
	Signed, Renewals, Reconnects int64
	// Busy counts attestations the server shed (its global limits) and
	// the agent retried, as agents do.
	Busy int64
	// AttestBusy counts those of Busy the server refused before any TLS
	// (a busy refusal at its connection limits: client.BusyError).
	AttestBusy int64
	// SyncBusy counts stream reconnects refused the same way, and
	// SyncNotListening those that found nothing listening.
	SyncBusy, SyncNotListening int64
	// Unavailable counts signing and renewal calls that found no server
	// (one restarting) and were retried.
	Unavailable int64
	// Errors of each kind (a stream that merely dropped, as when its
	// server restarts, is a reconnect, not an error).
	AttestErrors, SyncErrors, SignErrors, RenewErrors int64
}

// Errors returns the sum of the error counts.
func (c Counts) Errors() int64 { return c.AttestErrors + c.SyncErrors + c.SignErrors + c.RenewErrors }

// Counts returns the counters.
func (f *Fleet) Counts() Counts {
	return Counts{
		Signed: f.signed.Load(), Renewals: f.renewals.Load(), Reconnects: f.reconnects.Load(), Busy: f.busy.Load(),
		Unavailable: f.unavailable.Load(), AttestBusy: f.attestBusy.Load(), SyncBusy: f.syncBusy.Load(),
		SyncNotListening: f.syncNotListening.Load(),
		AttestErrors:     f.attestErrors.Load(), SyncErrors: f.syncErrors.Load(), SignErrors: f.signErrors.Load(),
		RenewErrors: f.renewErrors.Load(),
	}
}

// FirstError returns the first error recorded, if any.
func (f *Fleet) FirstError() error {
	f.errMu.Lock()
	defer f.errMu.Unlock()
	return f.firstErr
}

// failed records a failed signing or renewal call: an error, unless no
// server answered (Unavailable), which the agent retries.
func (f *Fleet) failed(counter *atomic.Int64, err error) {
	if status.Code(err) == codes.Unavailable {
		f.unavailable.Add(1)
		return
	}
	f.recordError(counter, err)
}

func (f *Fleet) recordError(counter *atomic.Int64, err error) {
	counter.Add(1)
	f.errMu.Lock()
	defer f.errMu.Unlock()
	if f.firstErr == nil {
		f.firstErr = err
	}
}

// csr returns a CSR for a new P-256 key (the key is dropped).
func (f *Fleet) csr() ([]byte, error) {
	_, csr, err := manager.NewKeyAndCSR()
	return csr, err
}

// WaitAll waits until cond has held for each agent in turn, or ctx ends.
// The conditions the benchmarks wait for only move forward (an agent that
// holds a revision keeps holding it or a later one), so this is the moment
// every agent held it.
func (f *Fleet) WaitAll(ctx context.Context, cond func(*Agent) bool) error {
	for _, a := range f.Agents {
		if err := WaitAgent(ctx, a, cond); err != nil {
			return err
		}
	}
	return nil
}

// WaitAgent waits until cond holds for a, or ctx ends.
func WaitAgent(ctx context.Context, a *Agent, cond func(*Agent) bool) error {
	for {
		ch := a.Changed()
		if cond(a) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("fleet: agent %d (%s): %w; state %+v", a.Index, a.ID, ctx.Err(), a.State())
		case <-ch:
		case <-time.After(time.Second):
			// Half-life rotation moves Current without a message.
		}
	}
}

// Remint drops every SVID the agents hold, so that each mints all of its
// SVIDs again (new keys and CSRs): signing under load.
func (f *Fleet) Remint() {
	for _, a := range f.Agents {
		a.mu.Lock()
		clear(a.svids)
		a.broadcastLocked()
		a.mu.Unlock()
		select {
		case a.mintKick <- struct{}{}:
		default:
		}
	}
}

// Synced is the condition "connected and holding a current SVID for every
// entry".
func Synced(a *Agent) bool { return a.State().Synced() }

// noteStreamEnd counts why a stream ended or a reconnect failed, other
// than busy and not listening, by the start of its message.
func (f *Fleet) noteStreamEnd(err error) {
	msg := status.Convert(err).Message()
	msg = msg[:min(len(msg), 60)]
	f.otherMu.Lock()
	defer f.otherMu.Unlock()
	if f.otherErrs == nil {
		f.otherErrs = make(map[string]int)
	}
	f.otherErrs[status.Code(err).String()+": "+msg]++
}

// StreamEnds returns the counts of noteStreamEnd and clears them.
func (f *Fleet) StreamEnds() map[string]int {
	f.otherMu.Lock()
	defer f.otherMu.Unlock()
	out := f.otherErrs
	f.otherErrs = nil
	return out
}
