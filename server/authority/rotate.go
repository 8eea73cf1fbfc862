package authority

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hallmarkid/hallmark/internal/rotation"
)

// Rotate performs every rotation step due at the current clock time: with
// Config.Shared it first adopts what the servers agreed on; then it prunes
// expired old keys, prepares a successor (published at once) when half
// the active lifetime has passed, and activates the successor when its
// time has come. Every change is persisted (and shared) before it takes
// effect. Run calls it; tests with a fake clock call it directly.
func (g *Engine[K, D, P]) Rotate(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.retrySwap(func() error { return g.rotate(ctx) })
}

// maxSwapTries bounds how often a step is redone after losing the shared
// state to another server's write.
const maxSwapTries = 5

// errSwapLost reports that another server changed the shared state since
// this one read it: the step must be redone on what it wrote.
var errSwapLost = errors.New("another server changed the shared state first")

// errSharedMissing reports that the shared store holds no state yet.
var errSharedMissing = errors.New("no shared state")

// retrySwap runs step, which starts by adopting the shared state, again
// while it loses the shared state to another server's write: each round
// adopts what the other wrote and redoes the step on it. The caller holds
// mu.
func (g *Engine[K, D, P]) retrySwap(step func() error) error {
	var err error
	for range maxSwapTries {
		if err = step(); !errors.Is(err, errSwapLost) {
			return err
		}
		g.cfg.Log.Info(g.spec.Messages.SwapLost)
	}
	return fmt.Errorf("%w (%d tries)", err, maxSwapTries)
}

// rotate is one round of Rotate. The caller holds mu.
func (g *Engine[K, D, P]) rotate(ctx context.Context) error {
	sp, log := g.spec, g.cfg.Log
	now := g.cfg.Clock()
	if g.cfg.Shared != nil {
		if err := g.syncShared(ctx, now); err != nil {
			return err
		}
	}
	cur := g.cur.Load()
	active, next := cur.active, cur.next
	var old []*Entry[K]
	var pruned []string
	for _, e := range cur.old {
		if e.Expired(now) {
			pruned = append(pruned, e.ID())
			continue
		}
		old = append(old, e)
	}
	if next != nil && next.Expired(now) {
		pruned = append(pruned, next.ID())
		next = nil
	}
	var prepared, activated *Entry[K]
	if next == nil {
		prep, _ := rotation.Schedule(active.Key.NotBefore(), active.NotAfter(), now)
		if !now.Before(prep) || active.Expired(now) {
			if reason, attrs := g.blocked(active); reason == "" {
				k, err := g.kind.Mint(now)
				if err != nil {
					return fmt.Errorf("%s: prepare next %s: %w", sp.Prefix, sp.Noun, err)
				}
				n := &Entry[K]{Key: k, PublishedAt: now}
				next, prepared = n, n
			} else if !g.warnedBlocked {
				g.warnedBlocked = true
				log.Warn(sp.Messages.Blocked, attrs...)
			}
		}
	}
	if next != nil {
		_, act := rotation.Schedule(active.Key.NotBefore(), active.NotAfter(), next.PublishedAt)
		if !now.Before(act) || active.Expired(now) {
			if now.Before(act) {
				log.Warn(sp.Messages.LateActivation, "expired", active.ID(), "successor", next.ID())
			}
			if sp.DropExpiredActive && active.Expired(now) {
				pruned = append(pruned, active.ID())
			} else {
				old = append([]*Entry[K]{active}, old...)
			}
			active = next.WithTimes(next.PublishedAt, now)
			next, activated = nil, active
		}
	}
	if len(pruned) == 0 && prepared == nil && activated == nil {
		return nil
	}
	s := g.build(cur.version+1, active, next, old, cur.seq, cur.digest, now)
	s.revoked = rotation.LiveRevoked(cur.revoked, now)
	if err := g.persist(ctx, s); err != nil {
		return err
	}
	g.publish(s)
	if len(pruned) > 0 {
		log.Info(sp.Messages.Pruned, append([]any{sp.IDAttr + "s", pruned}, g.seqAttrs(s)...)...)
	}
	if prepared != nil {
		attrs := append([]any{sp.IDAttr, prepared.ID()}, g.kind.Describe(prepared)...)
		log.Info(sp.Messages.Prepared, append(attrs, g.seqAttrs(s)...)...)
	}
	if activated != nil {
		log.Info(sp.Messages.Activated, sp.IDAttr, activated.ID(), "not_after", activated.NotAfter())
	}
	return nil
}

// build makes a snapshot, numbering what it publishes: the sequence grows
// by one from seqBase when the digest differs from digestBase, and never
// goes below what this engine has published.
func (g *Engine[K, D, P]) build(version uint64, active, next *Entry[K], old []*Entry[K], seqBase uint64, digestBase string, now time.Time) *Snapshot[K, P] {
	old = slices.Clone(old)
	slices.SortStableFunc(old, func(a, b *Entry[K]) int { return b.Key.NotBefore().Compare(a.Key.NotBefore()) })
	pub, digest := g.kind.Publish(active, next, old, now)
	seq := seqBase
	if digest != digestBase {
		seq++
	}
	if cur := g.cur.Load(); cur != nil {
		if digest != cur.digest {
			seq = max(seq, cur.seq+1)
		} else {
			seq = max(seq, cur.seq)
		}
	}
	return &Snapshot[K, P]{version: version, active: active, next: next, old: old, pub: pub, digest: digest, seq: seq}
}

// publish makes s current and signals a change of what is published.
func (g *Engine[K, D, P]) publish(s *Snapshot[K, P]) {
	prev := g.cur.Swap(s)
	if prev != nil && prev.digest == s.digest {
		return
	}
	g.chMu.Lock()
	close(g.changed)
	g.changed = make(chan struct{})
	g.chMu.Unlock()
}

// persist writes s to the shared store (first: that is where servers
// agree) and to the local state file. The shared write replaces only what
// this engine last read or wrote there (sharedSeen): errSwapLost, and
// nothing written, when another server changed it since.
func (g *Engine[K, D, P]) persist(ctx context.Context, s *Snapshot[K, P]) error {
	data, err := g.encode(s)
	if err != nil {
		return err
	}
	if g.cfg.Shared != nil {
		ctx, cancel := context.WithTimeout(ctx, sharedTimeout)
		defer cancel()
		swapped, err := g.cfg.Shared.SwapKV(ctx, g.spec.SharedKey, g.sharedSeen, data)
		if err != nil {
			return fmt.Errorf("%s: write shared state: %w", g.spec.Prefix, err)
		}
		if !swapped {
			return fmt.Errorf("%s: %w", g.spec.Prefix, errSwapLost)
		}
		g.sharedSeen = data
		g.sharedWrites.Add(1)
	}
	return g.writeStateFile(data)
}

// readShared reads and decodes the shared state. It returns the bytes read
// even when they do not decode.
func (g *Engine[K, D, P]) readShared(ctx context.Context) (*decoded[K], []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, sharedTimeout)
	defer cancel()
	data, err := g.cfg.Shared.GetKV(ctx, g.spec.SharedKey)
	switch {
	case errors.Is(err, g.cfg.SharedNotFound):
		return nil, nil, errSharedMissing
	case err != nil:
		return nil, nil, fmt.Errorf("%s: read shared state: %w", g.spec.Prefix, err)
	}
	ds, err := g.decode(data)
	if err != nil {
		return nil, data, fmt.Errorf("%s: shared state: %w", g.spec.Prefix, err)
	}
	return ds, data, nil
}

// syncShared adopts the shared state when it differs from ours, keeping
// keys this server signed with (until they expire) so that what it issued
// keeps verifying; it writes ours when the store has none. The caller
// holds mu.
func (g *Engine[K, D, P]) syncShared(ctx context.Context, now time.Time) error {
	cur := g.cur.Load()
	ds, data, err := g.readShared(ctx)
	if err == nil || errors.Is(err, errSharedMissing) {
		g.sharedSeen = data
	}
	if errors.Is(err, errSharedMissing) {
		g.cfg.Log.Warn(g.spec.Messages.SharedMissing)
		return g.persist(ctx, cur)
	}
	if err != nil {
		return err
	}
	if mine, err := g.encode(cur); err == nil && bytes.Equal(mine, data) {
		return nil
	}
	s, dirty, err := g.fromState(ds, cur, now)
	if err != nil {
		return err
	}
	if k := g.keepSigned(s, cur.All(), now); k != s {
		s, dirty = k, true
	}
	if s.setKey() == cur.setKey() && s.version == cur.version && !dirty {
		return nil
	}
	if dirty {
		s.version = max(ds.version, cur.version) + 1
		if err := g.persist(ctx, s); err != nil {
			return err
		}
	} else if enc, err := g.encode(s); err != nil {
		return err
	} else if err := g.writeStateFile(enc); err != nil {
		return err
	}
	g.publish(s)
	if s.setKey() != cur.setKey() {
		attrs := []any{"active", s.active.ID()}
		if g.spec.Layout == LayoutKeys {
			attrs = append(attrs, "next", s.next != nil, g.spec.Plural, len(s.All()))
		}
		attrs = append(attrs, "version", s.version)
		g.cfg.Log.Info(g.spec.Messages.Adopted, append(attrs, g.seqAttrs(s)...)...)
	}
	return nil
}

// fromState turns decoded state into a snapshot under the current
// configuration (Policy.Place); a missing active key is replaced by the
// prepared successor or a new key. prev, when set, is the snapshot being
// replaced: keys it knows keep its publication time (and activation time
// if the state has none); new ones count as published now, since that is
// when this server publishes them. dirty reports that the result differs
// from ds and should be written back.
func (g *Engine[K, D, P]) fromState(ds *decoded[K], prev *Snapshot[K, P], now time.Time) (s *Snapshot[K, P], dirty bool, err error) {
	var active, next *Entry[K]
	var old []*Entry[K]
	for _, de := range ds.entries {
		e := de.e
		if prev != nil {
			if known := prev.find(e.ID()); known != nil {
				act := e.ActivatedAt
				if act.IsZero() {
					act = known.ActivatedAt
				}
				e = e.WithTimes(known.PublishedAt, act)
			} else if e.PublishedAt.Before(now) {
				e = e.WithTimes(now, e.ActivatedAt)
			}
		}
		status, want := StatusOld, RoleOld
		switch de.status {
		case docActive:
			status, want = StatusActive, RoleActive
		case docNext:
			status, want = StatusPrepared, RoleNext
		}
		e, role := g.place(e, status, de.foreign, now)
		dirty = dirty || role != want
		switch role {
		case RoleActive:
			active = e
		case RoleNext:
			next = e
		case RoleOld:
			old = append(old, e)
		}
	}
	if active == nil {
		dirty = true
		if next != nil {
			active, next = next.WithTimes(next.PublishedAt, now), nil
		} else {
			k, err := g.kind.Mint(now)
			if err != nil {
				return nil, false, err
			}
			active = &Entry[K]{Key: k, PublishedAt: now, ActivatedAt: now}
		}
		g.cfg.Log.Warn(g.spec.Messages.Replaced, append([]any{"active", active.ID()}, g.kind.Describe(active)...)...)
	}
	s = g.build(ds.version, active, next, old, ds.seq, ds.digest, now)
	s.revoked = ds.revoked
	return s, dirty, nil
}

// place asks the Policy where e goes; without one, every entry keeps its
// role, and an active one that never recorded its activation counts as
// activated now.
func (g *Engine[K, D, P]) place(e *Entry[K], status string, foreign bool, now time.Time) (*Entry[K], Role) {
	if g.policy != nil {
		return g.policy.Place(e, status, foreign, now)
	}
	switch status {
	case StatusActive:
		if e.ActivatedAt.IsZero() {
			e = e.WithTimes(e.PublishedAt, now)
		}
		return e, RoleActive
	case StatusPrepared:
		return e, RoleNext
	}
	return e, RoleOld
}

// keepSigned returns s with every entry of had that signed (it was active
// at some point), has not expired, was not revoked and is missing from s
// added as old; s itself when there is none.
func (g *Engine[K, D, P]) keepSigned(s *Snapshot[K, P], had []*Entry[K], now time.Time) *Snapshot[K, P] {
	var add []*Entry[K]
	for _, e := range had {
		if e.ActivatedAt.IsZero() || e.Expired(now) || s.find(e.ID()) != nil {
			continue
		}
		if _, revoked := s.revoked[e.ID()]; revoked {
			// An operator removed it on purpose (revoke): never merge it back.
			continue
		}
		if g.policy != nil && !g.policy.Keep(e.Key) {
			continue
		}
		g.cfg.Log.Warn(g.spec.Messages.KeptSigned, g.spec.IDAttr, e.ID())
		add = append(add, e)
	}
	if len(add) == 0 {
		return s
	}
	out := g.build(s.version, s.active, s.next, append(slices.Clone(s.old), add...), s.seq, s.digest, now)
	out.revoked = s.revoked
	return out
}
