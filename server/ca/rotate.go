package ca

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hallmarkid/hallmark/internal/rotation"
)

// schedule returns when to prepare the successor of an authority valid
// from notBefore to notAfter, and when a successor this server published at
// published may become active (internal/rotation: 1/2 and 5/6).
func schedule(notBefore, notAfter, published time.Time) (prepare, activate time.Time) {
	return rotation.Schedule(notBefore, notAfter, published)
}

// Run rotates the authorities until ctx is done: it wakes when the next
// step is due (and, with Config.Shared, every poll interval to pick up
// what other servers did), and calls Rotate. Errors are logged and retried.
func (ca *CA) Run(ctx context.Context) {
	for {
		wait := rotation.PollInterval(ca.cur.Load().active.lifetime())
		if err := ca.Rotate(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			ca.log.Error("CA rotation step failed; will retry", "error", err, "retry_in", wait)
		} else {
			wait = ca.nextWake()
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// nextWake returns how long Run may sleep before the next step is due.
func (ca *CA) nextWake() time.Duration {
	s := ca.cur.Load()
	now := ca.clock()
	var events []time.Time
	if s.next == nil {
		if ca.canPrepare(s.active) {
			p, _ := schedule(s.active.cert.NotBefore, s.active.cert.NotAfter, now)
			events = append(events, p)
		}
	} else {
		_, act := schedule(s.active.cert.NotBefore, s.active.cert.NotAfter, s.next.publishedAt)
		events = append(events, act, s.next.cert.NotAfter)
	}
	events = append(events, s.active.cert.NotAfter)
	for _, a := range s.old {
		events = append(events, a.cert.NotAfter)
	}
	wait := time.Hour
	if ca.shared != nil {
		wait = rotation.PollInterval(s.active.lifetime())
	}
	for _, e := range events {
		if d := e.Sub(now); d > 0 && d < wait {
			wait = d
		}
	}
	// A little late rather than early: Rotate compares with the clock.
	return max(wait+5*time.Millisecond, 10*time.Millisecond)
}

// canPrepare reports whether a successor of active could outlive it: with
// an upstream CA that expires no later than active, it cannot (Rotate then
// warns once).
func (ca *CA) canPrepare(active *authority) bool {
	if ca.up == nil || ca.up.cert.NotAfter.After(active.cert.NotAfter) {
		return true
	}
	return false
}

// Rotate performs every rotation step due at the current clock time: with
// Config.Shared it first adopts what the servers agreed on; then it prunes
// expired old authorities, prepares a successor (published in Bundle at
// once) when half the active lifetime has passed, and activates the
// successor when its time has come. Every change is persisted (and shared)
// before it takes effect. Run calls it; tests with a fake clock call it
// directly.
func (ca *CA) Rotate(ctx context.Context) error {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return ca.retrySwap(func() error { return ca.rotate(ctx) })
}

// maxSwapTries bounds how often a step is redone after losing the shared
// state to another server's write.
const maxSwapTries = 5

// errSwapLost reports that another server changed the shared state since
// this one read it: the step must be redone on what it wrote.
var errSwapLost = errors.New("ca: another server changed the shared state first")

// retrySwap runs step, which starts by adopting the shared state, again
// while it loses the shared state to another server's write: each round
// adopts what the other wrote and redoes the step on it. The caller holds
// mu.
func (ca *CA) retrySwap(step func() error) error {
	var err error
	for range maxSwapTries {
		if err = step(); !errors.Is(err, errSwapLost) {
			return err
		}
		ca.log.Info("another server changed the shared CA state first; adopting it and redoing the step")
	}
	return fmt.Errorf("%w (%d tries)", err, maxSwapTries)
}

// rotate is one round of Rotate. The caller holds mu.
func (ca *CA) rotate(ctx context.Context) error {
	now := ca.clock()
	if ca.shared != nil {
		if err := ca.syncShared(ctx, now); err != nil {
			return err
		}
	}
	cur := ca.cur.Load()
	active, next := cur.active, cur.next
	var old []*authority
	var pruned []string
	for _, a := range cur.old {
		if a.expired(now) {
			pruned = append(pruned, a.id)
			continue
		}
		old = append(old, a)
	}
	if next != nil && next.expired(now) {
		pruned = append(pruned, next.id)
		next = nil
	}
	var prepared, activated *authority
	if next == nil {
		prep, _ := schedule(active.cert.NotBefore, active.cert.NotAfter, now)
		if !now.Before(prep) || active.expired(now) {
			if ca.canPrepare(active) {
				n, err := mint(ca.td, ca.keyType, ca.ttl, ca.up, now)
				if err != nil {
					return fmt.Errorf("ca: prepare next authority: %w", err)
				}
				next, prepared = n, n
			} else if !ca.warnedUpstream {
				ca.warnedUpstream = true
				ca.log.Warn("upstream CA certificate expires no later than the active intermediate; replace the upstream CA to keep rotating",
					"upstream_not_after", ca.up.cert.NotAfter, "active_not_after", active.cert.NotAfter)
			}
		}
	}
	if next != nil {
		_, act := schedule(active.cert.NotBefore, active.cert.NotAfter, next.publishedAt)
		if !now.Before(act) || active.expired(now) {
			if now.Before(act) {
				ca.log.Warn("active CA authority expired before its successor was published long enough; activating the successor now (peers that lack it in their bundle will fail until they receive it)",
					"expired", active.id, "successor", next.id)
			}
			old = append([]*authority{active}, old...)
			active = next.withTimes(next.publishedAt, now)
			next, activated = nil, active
		}
	}
	if len(pruned) == 0 && prepared == nil && activated == nil {
		return nil
	}
	s := ca.build(cur.version+1, active, next, old, cur.seq, cur.digest, now)
	s.revoked = rotation.LiveRevoked(cur.revoked, now)
	if err := ca.persist(ctx, s); err != nil {
		return err
	}
	ca.publish(s)
	if len(pruned) > 0 {
		ca.log.Info("pruned expired CA authorities", "ids", pruned, "bundle_sequence", s.seq)
	}
	if prepared != nil {
		ca.log.Info("prepared next CA authority; published in the bundle", "id", prepared.id,
			"not_after", prepared.cert.NotAfter, "intermediate", !prepared.root, "bundle_sequence", s.seq)
	}
	if activated != nil {
		ca.log.Info("activated CA authority", "id", activated.id, "not_after", activated.cert.NotAfter)
	}
	return nil
}

// build makes a snapshot, numbering its bundle: the sequence grows by one
// from seqBase when the bundle differs from digestBase, and never goes
// below what this CA has published.
func (ca *CA) build(version uint64, active, next *authority, old []*authority, seqBase uint64, digestBase string, now time.Time) *snapshot {
	old = slices.Clone(old)
	slices.SortStableFunc(old, func(a, b *authority) int { return b.cert.NotBefore.Compare(a.cert.NotBefore) })
	bundle, digest := bundleOf(active, next, old, ca.up, now)
	seq := seqBase
	if digest != digestBase {
		seq++
	}
	if cur := ca.cur.Load(); cur != nil {
		if digest != cur.digest {
			seq = max(seq, cur.seq+1)
		} else {
			seq = max(seq, cur.seq)
		}
	}
	return &snapshot{version: version, active: active, next: next, old: old, bundle: bundle, digest: digest, seq: seq}
}

// publish makes s current and signals a bundle change.
func (ca *CA) publish(s *snapshot) {
	prev := ca.cur.Swap(s)
	if prev != nil && prev.digest == s.digest {
		return
	}
	ca.chMu.Lock()
	close(ca.changed)
	ca.changed = make(chan struct{})
	ca.chMu.Unlock()
}

// persist writes s to the shared store (first: that is where servers
// agree) and to the local state file. The shared write replaces only what
// this CA last read or wrote there (sharedSeen): errSwapLost, and nothing
// written, when another server changed it since.
func (ca *CA) persist(ctx context.Context, s *snapshot) error {
	data, err := encodeState(ca.td, s)
	if err != nil {
		return err
	}
	if ca.shared != nil {
		ctx, cancel := context.WithTimeout(ctx, sharedTimeout)
		defer cancel()
		swapped, err := ca.shared.SwapKV(ctx, SharedStateKey, ca.sharedSeen, data)
		if err != nil {
			return fmt.Errorf("ca: write shared state: %w", err)
		}
		if !swapped {
			return errSwapLost
		}
		ca.sharedSeen = data
	}
	return writeStateFile(ca.dir, data)
}

// errSharedMissing reports that the shared store holds no state yet.
var errSharedMissing = errors.New("ca: no shared state")

// readShared reads and decodes the shared state. It returns the bytes read
// even when they do not decode.
func (ca *CA) readShared(ctx context.Context) (*decodedState, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, sharedTimeout)
	defer cancel()
	data, err := ca.shared.GetKV(ctx, SharedStateKey)
	switch {
	case errors.Is(err, ca.notFound):
		return nil, nil, errSharedMissing
	case err != nil:
		return nil, nil, fmt.Errorf("ca: read shared state: %w", err)
	}
	ds, err := decodeState(data, ca.td, ca.up)
	if err != nil {
		return nil, data, fmt.Errorf("ca: shared state: %w", err)
	}
	return ds, data, nil
}

// syncShared adopts the shared state when it differs from ours, keeping
// authorities this server signed with (until they expire) so that what it
// issued keeps verifying; it writes ours when the store has none. The
// caller holds mu.
func (ca *CA) syncShared(ctx context.Context, now time.Time) error {
	cur := ca.cur.Load()
	ds, data, err := ca.readShared(ctx)
	if err == nil || errors.Is(err, errSharedMissing) {
		ca.sharedSeen = data
	}
	if errors.Is(err, errSharedMissing) {
		ca.log.Warn("shared CA state is missing; writing this server's")
		return ca.persist(ctx, cur)
	}
	if err != nil {
		return err
	}
	if mine, err := encodeState(ca.td, cur); err == nil && bytes.Equal(mine, data) {
		return nil
	}
	s, dirty, err := ca.fromState(ds, cur, now)
	if err != nil {
		return err
	}
	if k := ca.keepSigned(s, cur.all(), now); k != s {
		s, dirty = k, true
	}
	if s.setKey() == cur.setKey() && s.version == cur.version && !dirty {
		return nil
	}
	if dirty {
		s.version = max(ds.version, cur.version) + 1
		if err := ca.persist(ctx, s); err != nil {
			return err
		}
	} else if enc, err := encodeState(ca.td, s); err != nil {
		return err
	} else if err := writeStateFile(ca.dir, enc); err != nil {
		return err
	}
	ca.publish(s)
	if s.setKey() != cur.setKey() {
		ca.log.Info("adopted the shared CA state", "active", s.active.id, "version", s.version, "bundle_sequence", s.seq)
	}
	return nil
}

// fromState turns decoded state into a snapshot under the current
// configuration. Authorities foreign to it are dropped; an active root
// under an upstream CA (or a missing active) is replaced by the prepared
// successor or a new authority, and kept as old when it is a root. prev,
// when set, is the snapshot being replaced: authorities it knows keep its
// publication time, new ones count as published now. dirty reports that
// the result differs from ds and should be written back.
func (ca *CA) fromState(ds *decodedState, prev *snapshot, now time.Time) (s *snapshot, dirty bool, err error) {
	var active, next *authority
	var old []*authority
	for _, e := range ds.entries {
		a := e.a
		if prev != nil {
			if known := prev.find(a.id); known != nil {
				act := a.activatedAt
				if act.IsZero() {
					act = known.activatedAt
				}
				a = a.withTimes(known.publishedAt, act)
			} else if a.publishedAt.Before(now) {
				a = a.withTimes(now, a.activatedAt)
			}
		}
		if e.foreign {
			ca.log.Warn("dropping a CA authority issued by neither itself nor the configured upstream CA (configuration changed?)",
				"id", a.id, "status", e.status, "subject", a.cert.Subject.String())
			dirty = true
			continue
		}
		switch {
		case e.status == statusOld:
			old = append(old, a)
		case ca.up != nil && a.root:
			// Switched to an upstream CA: the root stays trusted until it
			// expires, but signs no more.
			ca.log.Warn("an upstream CA is configured; the CA's own root stops signing and stays in the bundle until it expires",
				"id", a.id, "not_after", a.cert.NotAfter)
			dirty = true
			if e.status == statusActive || !a.activatedAt.IsZero() {
				old = append(old, a)
			}
		case e.status == statusActive:
			active = a
		case e.status == statusNext:
			next = a
		}
	}
	if active == nil {
		dirty = true
		if next != nil {
			active, next = next.withTimes(next.publishedAt, now), nil
		} else {
			a, err := mint(ca.td, ca.keyType, ca.ttl, ca.up, now)
			if err != nil {
				return nil, false, err
			}
			a.activatedAt = now
			active = a
		}
		ca.log.Warn("CA authority replaced at once after a configuration change", "active", active.id, "intermediate", !active.root)
	}
	s = ca.build(ds.version, active, next, old, ds.seq, ds.digest, now)
	s.revoked = ds.revoked
	return s, dirty, nil
}

// keepSigned returns s with every authority of had that signed (it was
// active at some point), has not expired and is missing from s added as
// old; s itself when there is none.
func (ca *CA) keepSigned(s *snapshot, had []*authority, now time.Time) *snapshot {
	var add []*authority
	for _, a := range had {
		if a.activatedAt.IsZero() || a.expired(now) || s.find(a.id) != nil {
			continue
		}
		if _, revoked := s.revoked[a.id]; revoked {
			// An operator removed it on purpose (revoke): never merge it back.
			continue
		}
		if ca.up == nil && !a.root {
			continue
		}
		ca.log.Warn("keeping a CA authority that signed SVIDs but is missing from the shared state", "id", a.id)
		add = append(add, a)
	}
	if len(add) == 0 {
		return s
	}
	out := ca.build(s.version, s.active, s.next, append(slices.Clone(s.old), add...), s.seq, s.digest, now)
	out.revoked = s.revoked
	return out
}
