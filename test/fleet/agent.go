package fleet

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hallmarkid/hallmark/agent/client"
	"github.com/hallmarkid/hallmark/agent/manager"
	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/attestors/jointoken"
	"github.com/hallmarkid/hallmark/internal/busy"
	"github.com/hallmarkid/hallmark/internal/x509util"
)

// Agent is one simulated agent. Its state is what a real agent's cache
// would hold, minus the keys and certificates themselves: the generator
// keeps only what it needs to tell when the agent holds what, so that its
// own memory and CPU stay small next to the server's.
type Agent struct {
	// Index is the agent's position in the fleet; ID its agent ID.
	Index int
	ID    spiffeid.ID
	token string
	fl    *Fleet
	c     *client.Client

	mintKick chan struct{}

	mu sync.Mutex // guards the fields that follow
	// entries maps entry ID → the revision the server last sent.
	entries map[string]int64
	// svids maps entry ID → the SVID held for it.
	svids map[string]svidState
	// authorities holds the IDs (authorityID) of the bundle's CAs.
	authorities map[string]bool
	rev         int64
	// streams counts the Sync streams that delivered a first message.
	streams   int
	streamAt  time.Time // when the latest stream's first message arrived
	connected bool
	svidStart time.Time // when the agent SVID was received
	svidEnd   time.Time
	attested  bool
	changed   chan struct{} // closed and replaced on every change
}

type svidState struct {
	rev              int64
	issued, notAfter time.Time
}

// State is a snapshot of what an agent holds.
type State struct {
	Attested, Connected bool
	Streams             int
	Revision            int64
	Entries             int
	// Current counts entries whose held SVID is for the entry's latest
	// revision and not yet half-way through its life.
	Current int
}

// Synced reports whether the agent is connected and holds a current SVID
// for every entry it was sent (and was sent at least one entry).
func (s State) Synced() bool { return s.Connected && s.Entries > 0 && s.Current == s.Entries }

// State returns a snapshot of the agent.
func (a *Agent) State() State {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := State{Attested: a.attested, Connected: a.connected, Streams: a.streams, Revision: a.rev, Entries: len(a.entries)}
	now := time.Now()
	for id, rev := range a.entries {
		if s, ok := a.svids[id]; ok && s.rev == rev && now.Before(halfLife(s.issued, s.notAfter)) {
			st.Current++
		}
	}
	return st
}

// StreamAt returns when the agent's latest Sync stream delivered its first
// message.
func (a *Agent) StreamAt() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.streamAt
}

// HoldsSVID reports whether the agent holds an SVID for the entry at
// revision rev or later.
func (a *Agent) HoldsSVID(entryID string, rev int64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.svids[entryID]
	return ok && s.rev >= rev
}

// HoldsAuthority reports whether the agent's bundle holds the CA whose
// authority ID (16 hex digits of the SHA-256 of its DER) is id.
func (a *Agent) HoldsAuthority(id string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.authorities[id]
}

// Changed returns a channel closed at the agent's next change.
func (a *Agent) Changed() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.changed
}

func (a *Agent) broadcastLocked() {
	close(a.changed)
	a.changed = make(chan struct{})
}

func authorityID(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:8])
}

func halfLife(issued, notAfter time.Time) time.Time {
	return issued.Add(notAfter.Sub(issued) / 2)
}

// run attests, then holds the Sync stream (reconnecting with backoff, as
// the agent does), minting and renewing alongside, until ctx is done.
func (a *Agent) run(ctx context.Context) {
	if !a.attest(ctx) {
		return
	}
	go a.mintLoop(ctx)
	go a.renewLoop(ctx)
	var backoff manager.Backoff // the agent's own reconnect policy
	for ctx.Err() == nil {
		start := time.Now()
		stopWindow, stopped, err := a.syncOnce(ctx)
		a.mu.Lock()
		a.connected = false
		a.broadcastLocked()
		a.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		a.fl.reconnects.Add(1)
		if _, ok := errors.AsType[*client.BusyError](err); ok {
			a.fl.syncBusy.Add(1)
		} else if errors.Is(err, client.ErrNotListening) {
			a.fl.syncNotListening.Add(1)
		} else {
			a.fl.noteStreamEnd(err)
		}
		if status.Code(err) == codes.PermissionDenied {
			a.fl.recordError(&a.fl.syncErrors, err)
		}
		if time.Since(start) > time.Minute {
			backoff.Reset()
		}
		var wait time.Duration
		if stopped {
			wait = backoff.AfterStop(stopWindow)
		} else {
			wait = backoff.After(err)
		}
		if !sleep(ctx, wait) {
			return
		}
	}
}

// attest attests with the agent's join token, retrying refusals that a
// retry can cure (a busy server) with the agent's backoff (200 ms doubling
// to 10 s, jittered, within the server's window when it refused the
// connection as busy); it reports success.
func (a *Agent) attest(ctx context.Context) bool {
	backoff := manager.Backoff{Min: 200 * time.Millisecond, Max: 10 * time.Second}
	for ctx.Err() == nil {
		key, csr, err := manager.NewKeyAndCSR()
		if err != nil {
			a.fl.recordError(&a.fl.attestErrors, err)
			return false
		}
		res, err := a.c.Attest(ctx, jointoken.NewCollector(a.token), key, csr)
		if err == nil {
			a.c.SetBundle(res.Bundle)
			a.c.SetSVID(&x509svid.SVID{ID: a.ID, Certificates: res.Certs, PrivateKey: key})
			a.mu.Lock()
			a.attested = true
			a.svidStart, a.svidEnd = time.Now(), res.Certs[0].NotAfter // from receipt: NotBefore is backdated
			a.setBundleLocked(res.Bundle)
			a.broadcastLocked()
			a.mu.Unlock()
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		switch status.Code(err) {
		case codes.ResourceExhausted, codes.Unavailable:
			a.fl.busy.Add(1)
			if _, ok := errors.AsType[*client.BusyError](err); ok {
				a.fl.attestBusy.Add(1)
			}
		default:
			a.fl.recordError(&a.fl.attestErrors, err)
			// A join token is single use: a refusal other than "busy"
			// (the token spent or expired) cannot be retried.
			return false
		}
		if !sleep(ctx, backoff.After(err)) {
			return false
		}
	}
	return false
}

func (a *Agent) setBundleLocked(certs []*x509.Certificate) {
	a.authorities = make(map[string]bool, len(certs))
	for _, c := range certs {
		a.authorities[authorityID(c.Raw)] = true
	}
}

// syncOnce holds one Sync stream: a resuming request once the agent holds
// a snapshot, so that a reconnect re-sends (and re-mints) nothing that did
// not change.
func (a *Agent) syncOnce(ctx context.Context) (stopWindow time.Duration, stopped bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req := &apiv1.SyncRequest{}
	a.mu.Lock()
	if a.rev > 0 {
		req.SinceRevision = a.rev
		for id := range a.entries {
			req.HeldEntryIds = append(req.HeldEntryIds, id)
		}
	}
	a.mu.Unlock()
	stream, err := a.c.Sync(ctx, req)
	if err != nil {
		return 0, false, err
	}
	for first := true; ; first = false {
		msg, err := stream.Recv()
		if err != nil {
			if status.Code(err) == codes.Unavailable {
				stopWindow, stopped = busy.StopWindow(stream.Trailer())
			}
			return stopWindow, stopped, err
		}
		if first && !msg.GetFull() && !msg.GetResumed() {
			return 0, false, errors.New("fleet: first sync message is neither a snapshot nor a resumption")
		}
		a.apply(msg, first)
	}
}

func (a *Agent) apply(msg *apiv1.SyncResponse, first bool) {
	var bundle []*x509.Certificate
	if b := msg.GetBundle(); b != nil {
		var err error
		if bundle, err = x509util.ParseChain(b.GetX509Authorities()); err != nil {
			a.fl.recordError(&a.fl.syncErrors, err)
			bundle = nil
		} else {
			a.c.SetBundle(bundle)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if bundle != nil {
		a.setBundleLocked(bundle)
	}
	if first {
		a.streams++
		a.streamAt = time.Now()
		a.connected = true
	}
	if msg.GetFull() {
		clear(a.entries)
	}
	for _, e := range msg.GetUpserts() {
		a.entries[e.GetId()] = e.GetRevision()
	}
	for _, id := range msg.GetDeletedIds() {
		delete(a.entries, id)
		delete(a.svids, id)
	}
	if msg.GetFull() {
		for id := range a.svids {
			if _, ok := a.entries[id]; !ok {
				delete(a.svids, id)
			}
		}
	}
	if r := msg.GetRevision(); r > 0 || msg.GetFull() || msg.GetResumed() {
		a.rev = r
	}
	a.broadcastLocked()
	if len(msg.GetUpserts()) > 0 || msg.GetFull() || msg.GetResumed() {
		select {
		case a.mintKick <- struct{}{}:
		default:
		}
	}
}

// due returns the entries (ID → revision) that need an SVID: none held,
// held for an older revision, or past half its life.
func (a *Agent) due(now time.Time) map[string]int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]int64)
	for id, rev := range a.entries {
		if s, ok := a.svids[id]; !ok || s.rev != rev || !now.Before(halfLife(s.issued, s.notAfter)) {
			out[id] = rev
		}
	}
	return out
}

// nextRotation returns when the first held SVID reaches half its life.
func (a *Agent) nextRotation() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	var next time.Time
	for _, s := range a.svids {
		if h := halfLife(s.issued, s.notAfter); next.IsZero() || h.Before(next) {
			next = h
		}
	}
	return next
}

func (a *Agent) mintLoop(ctx context.Context) {
	for {
		wait := time.Minute
		if due := a.due(time.Now()); len(due) > 0 {
			if err := a.mint(ctx, due); err != nil {
				if ctx.Err() != nil {
					return
				}
				a.fl.failed(&a.fl.signErrors, err)
				wait = time.Second
			} else {
				continue
			}
		}
		if next := a.nextRotation(); !next.IsZero() {
			wait = min(wait, max(time.Until(next), 10*time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return
		case <-a.mintKick:
		case <-time.After(wait):
		}
	}
}

// mint signs SVIDs for due entries in batches of at most BatchSize: a new
// P-256 key and CSR each, as the agent does (the keys are dropped).
func (a *Agent) mint(ctx context.Context, due map[string]int64) error {
	ids := make([]string, 0, len(due))
	for id := range due {
		ids = append(ids, id)
	}
	for len(ids) > 0 {
		batch := ids[:min(len(ids), a.fl.cfg.BatchSize)]
		ids = ids[len(batch):]
		reqs := make([]*apiv1.SVIDRequest, len(batch))
		for i, id := range batch {
			csr, err := a.fl.csr()
			if err != nil {
				return err
			}
			reqs[i] = &apiv1.SVIDRequest{EntryId: id, Csr: csr}
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		results, err := a.c.BatchSign(cctx, reqs)
		cancel()
		if err != nil {
			return err
		}
		now := time.Now()
		var firstErr error
		a.mu.Lock()
		for i, r := range results {
			if r.GetError() != "" || r.GetSvid() == nil {
				if firstErr == nil {
					firstErr = errors.New("fleet: sign " + r.GetEntryId() + ": " + r.GetError())
				}
				continue
			}
			a.svids[batch[i]] = svidState{rev: due[batch[i]], issued: now, notAfter: time.Unix(r.GetSvid().GetExpiresAt(), 0)}
			a.fl.signed.Add(1)
		}
		a.broadcastLocked()
		a.mu.Unlock()
		if firstErr != nil {
			return firstErr
		}
	}
	return nil
}

// renewLoop renews the agent SVID at half its life with a new key, over
// mTLS (join-token agents send no fresh evidence).
func (a *Agent) renewLoop(ctx context.Context) {
	for {
		a.mu.Lock()
		at := halfLife(a.svidStart, a.svidEnd)
		a.mu.Unlock()
		if !sleep(ctx, time.Until(at)) {
			return
		}
		key, csr, err := manager.NewKeyAndCSR()
		if err != nil {
			a.fl.recordError(&a.fl.renewErrors, err)
			return
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		res, err := a.c.Renew(cctx, nil, key, csr)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			a.fl.failed(&a.fl.renewErrors, err)
			if !sleep(ctx, time.Second) {
				return
			}
			continue
		}
		a.c.SetSVID(&x509svid.SVID{ID: a.ID, Certificates: res.Certs, PrivateKey: key})
		a.fl.renewals.Add(1)
		a.mu.Lock()
		a.svidStart, a.svidEnd = time.Now(), res.Certs[0].NotAfter // from receipt: NotBefore is backdated
		a.broadcastLocked()
		a.mu.Unlock()
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
