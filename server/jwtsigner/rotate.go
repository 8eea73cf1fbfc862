package jwtsigner

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hallmarkid/hallmark/internal/rotation"
)

// schedule returns when to prepare the successor of k, and when a
// successor this server published at published may become active
// (internal/rotation: 1/2 and 5/6, the CA's schedule).
func schedule(k *key, published time.Time) (prepare, activate time.Time) {
	return rotation.Schedule(k.notBefore, k.notBefore.Add(k.lifetime()), published)
}

// Run rotates the keys until ctx is done: it wakes when the next step is
// due (and, with Config.Shared, every poll interval to pick up what other
// servers did) and calls Rotate. Errors are logged and retried.
func (s *Signer) Run(ctx context.Context) {
	for {
		wait := rotation.PollInterval(s.cur.Load().active.lifetime())
		if err := s.Rotate(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.cfg.Log.Error("JWT key rotation step failed; will retry", "error", err, "retry_in", wait)
		} else {
			wait = s.nextWake()
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
func (s *Signer) nextWake() time.Duration {
	cur := s.cur.Load()
	now := s.cfg.Clock()
	var events []time.Time
	if cur.next == nil {
		p, _ := schedule(cur.active, now)
		events = append(events, p)
	} else {
		_, act := schedule(cur.active, cur.next.publishedAt)
		events = append(events, act, cur.next.notAfter)
	}
	events = append(events, cur.active.notAfter)
	for _, k := range cur.old {
		events = append(events, k.notAfter)
	}
	wait := time.Hour
	if s.cfg.Shared != nil {
		wait = rotation.PollInterval(cur.active.lifetime())
	}
	for _, e := range events {
		if d := e.Sub(now); d > 0 && d < wait {
			wait = d
		}
	}
	// A little late rather than early: Rotate compares with the clock.
	return max(wait+5*time.Millisecond, 10*time.Millisecond)
}

// Rotate performs every rotation step due at the current clock time: with
// Config.Shared it first adopts what the servers agreed on; then it prunes
// expired old keys, prepares a successor (published at once) when half the
// active lifetime has passed, and activates the successor when its time
// has come. Every change is persisted (and shared) before it takes effect,
// and closes the Changed channel. Run calls it; tests with a fake clock
// call it directly.
func (s *Signer) Rotate(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.retrySwap(func() error { return s.rotate(ctx) })
}

// maxSwapTries bounds how often a step is redone after losing the shared
// state to another server's write.
const maxSwapTries = 5

// errSwapLost reports that another server changed the shared state since
// this one read it: the step must be redone on what it wrote.
var errSwapLost = errors.New("jwtsigner: another server changed the shared state first")

// retrySwap runs step, which starts by adopting the shared state, again
// while it loses the shared state to another server's write: each round
// adopts what the other wrote and redoes the step on it. The caller holds
// mu.
func (s *Signer) retrySwap(step func() error) error {
	var err error
	for range maxSwapTries {
		if err = step(); !errors.Is(err, errSwapLost) {
			return err
		}
		s.cfg.Log.Info("Another server changed the shared JWT key state first; adopting it and redoing the step")
	}
	return fmt.Errorf("%w (%d tries)", err, maxSwapTries)
}

// rotate is one round of Rotate. The caller holds mu.
func (s *Signer) rotate(ctx context.Context) error {
	now := s.cfg.Clock()
	if s.cfg.Shared != nil {
		if err := s.syncShared(ctx, now); err != nil {
			return err
		}
	}
	cur := s.cur.Load()
	active, next := cur.active, cur.next
	var old []*key
	var pruned []string
	for _, k := range cur.old {
		if k.expired(now) {
			pruned = append(pruned, k.id)
			continue
		}
		old = append(old, k)
	}
	if next != nil && next.expired(now) {
		pruned = append(pruned, next.id)
		next = nil
	}
	var prepared, activated *key
	if next == nil {
		if prep, _ := schedule(active, now); !now.Before(prep) || active.expired(now) {
			n, err := s.mint(now)
			if err != nil {
				return fmt.Errorf("jwtsigner: prepare next key: %w", err)
			}
			next, prepared = n, n
		}
	}
	if next != nil {
		_, act := schedule(active, next.publishedAt)
		if !now.Before(act) || active.expired(now) {
			if now.Before(act) {
				s.cfg.Log.Warn("Active JWT key expired before its successor was published long enough; activating the successor now (relying parties that lack it will reject new tokens until they refresh)",
					"expired", active.id, "successor", next.id)
			}
			if !active.expired(now) {
				old = append([]*key{active}, old...)
			} else {
				pruned = append(pruned, active.id)
			}
			active = next.withTimes(next.publishedAt, now)
			next, activated = nil, active
		}
	}
	if len(pruned) == 0 && prepared == nil && activated == nil {
		return nil
	}
	snap := newSnapshot(cur.version+1, active, next, old)
	snap.revoked = rotation.LiveRevoked(cur.revoked, now)
	if err := s.persist(ctx, snap); err != nil {
		return err
	}
	s.publish(snap)
	if len(pruned) > 0 {
		s.cfg.Log.Info("Pruned expired JWT signing keys", "key_ids", pruned)
	}
	if prepared != nil {
		s.cfg.Log.Info("Prepared next JWT signing key; published in the JWT bundle", "key_id", prepared.id,
			"algorithm", prepared.alg, "not_after", prepared.notAfter)
	}
	if activated != nil {
		s.cfg.Log.Info("Activated JWT signing key", "key_id", activated.id, "not_after", activated.notAfter)
	}
	return nil
}

// publish makes snap current and signals a change of the keys or roles.
func (s *Signer) publish(snap *snapshot) {
	prev := s.cur.Swap(snap)
	if prev != nil && prev.set == snap.set {
		return
	}
	s.chMu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.chMu.Unlock()
}

// persist writes snap to the shared store (first: that is where servers
// agree) and to the local state file. The shared write replaces only what
// this signer last read or wrote there (sharedSeen): errSwapLost, and
// nothing written, when another server changed it since.
func (s *Signer) persist(ctx context.Context, snap *snapshot) error {
	data, err := encodeState(s.cfg.TrustDomain, snap)
	if err != nil {
		return err
	}
	if s.cfg.Shared != nil {
		ctx, cancel := context.WithTimeout(ctx, sharedTimeout)
		defer cancel()
		swapped, err := s.cfg.Shared.SwapKV(ctx, SharedStateKey, s.sharedSeen, data)
		if err != nil {
			return fmt.Errorf("jwtsigner: write shared state: %w", err)
		}
		if !swapped {
			return errSwapLost
		}
		s.sharedSeen = data
	}
	return writeStateFile(s.cfg.Dir, data)
}

// errSharedMissing reports that the shared store holds no state yet.
var errSharedMissing = errors.New("jwtsigner: no shared state")

// readShared reads and decodes the shared state; it returns the bytes read
// too, even when they do not decode.
func (s *Signer) readShared(ctx context.Context) (*decodedState, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, sharedTimeout)
	defer cancel()
	data, err := s.cfg.Shared.GetKV(ctx, SharedStateKey)
	switch {
	case errors.Is(err, s.cfg.SharedNotFound):
		return nil, nil, errSharedMissing
	case err != nil:
		return nil, nil, fmt.Errorf("jwtsigner: read shared state: %w", err)
	}
	ds, err := decodeState(data, s.cfg.TrustDomain)
	if err != nil {
		return nil, data, fmt.Errorf("jwtsigner: shared state: %w", err)
	}
	return ds, data, nil
}

// syncShared adopts the shared state when it differs from ours, keeping
// keys this server signed with (until they expire) so that what it issued
// keeps verifying; it writes ours when the store has none. The caller
// holds mu.
func (s *Signer) syncShared(ctx context.Context, now time.Time) error {
	cur := s.cur.Load()
	ds, data, err := s.readShared(ctx)
	if err == nil || errors.Is(err, errSharedMissing) {
		s.sharedSeen = data
	}
	if errors.Is(err, errSharedMissing) {
		s.cfg.Log.Warn("Shared JWT key state is missing; writing this server's")
		return s.persist(ctx, cur)
	}
	if err != nil {
		return err
	}
	snap := s.fromState(ds, cur, now)
	dirty := false
	if k := s.keepSigned(snap, cur.all(), now); k != snap {
		snap, dirty = k, true
	}
	if snap.set == cur.set && snap.version == cur.version && !dirty {
		return nil
	}
	if dirty {
		snap.version = max(ds.version, cur.version) + 1
		if err := s.persist(ctx, snap); err != nil {
			return err
		}
	} else if data, err := encodeState(s.cfg.TrustDomain, snap); err != nil {
		return err
	} else if err := writeStateFile(s.cfg.Dir, data); err != nil {
		return err
	}
	s.publish(snap)
	if snap.set != cur.set {
		s.cfg.Log.Info("Adopted the shared JWT key state", "active", snap.active.id, "next", snap.next != nil,
			"keys", len(snap.all()), "version", snap.version)
	}
	return nil
}

// fromState turns decoded state into a snapshot. prev, when set, is the
// snapshot being replaced: keys it knows keep their local publication
// time (and activation time if the state has none); new ones count as
// published now, since that is when this server's agents learn them.
func (s *Signer) fromState(ds *decodedState, prev *snapshot, now time.Time) *snapshot {
	var active, next *key
	var old []*key
	for _, e := range ds.entries {
		k := e.k
		if prev != nil {
			if known := prev.find(k.id); known != nil {
				act := k.activatedAt
				if act.IsZero() {
					act = known.activatedAt
				}
				k = k.withTimes(known.publishedAt, act)
			} else if k.publishedAt.Before(now) {
				k = k.withTimes(now, k.activatedAt)
			}
		}
		switch e.status {
		case statusActive:
			if k.activatedAt.IsZero() {
				k = k.withTimes(k.publishedAt, now)
			}
			active = k
		case statusNext:
			next = k
		default:
			old = append(old, k)
		}
	}
	snap := newSnapshot(ds.version, active, next, old)
	snap.revoked = ds.revoked
	return snap
}

// keepSigned returns snap with every key of had that signed (it was active
// at some point), has not expired and is missing from snap added as old;
// snap itself when there is none.
func (s *Signer) keepSigned(snap *snapshot, had []*key, now time.Time) *snapshot {
	var add []*key
	for _, k := range had {
		if k.activatedAt.IsZero() || k.expired(now) || snap.find(k.id) != nil {
			continue
		}
		if _, revoked := snap.revoked[k.id]; revoked {
			// An operator removed it on purpose (revoke): never merge it back.
			continue
		}
		s.cfg.Log.Warn("Keeping a JWT signing key that signed tokens but is missing from the shared state", "key_id", k.id)
		add = append(add, k)
	}
	if len(add) == 0 {
		return snap
	}
	out := newSnapshot(snap.version, snap.active, snap.next, append(slices.Clone(snap.old), add...))
	out.revoked = snap.revoked
	return out
}
