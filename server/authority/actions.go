package authority

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/hallmarkid/hallmark/internal/rotation"
)

// roles is the key set an operator action builds.
type roles[K Key] struct {
	active, next *Entry[K]
	old          []*Entry[K]
	revoked      map[string]time.Time
}

// change applies an operator action: like Rotate it first adopts the
// shared state (so the action applies to what the servers agreed on),
// then persists (and shares) the result before publishing it. When
// another server changes the shared state first, the action is applied
// again to what it wrote.
func (g *Engine[K, D, P]) change(ctx context.Context, f func(cur *Snapshot[K, P], now time.Time) (roles[K], error)) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.retrySwap(func() error { return g.changeOnce(ctx, f) })
}

// changeOnce is one round of change. The caller holds mu.
func (g *Engine[K, D, P]) changeOnce(ctx context.Context, f func(cur *Snapshot[K, P], now time.Time) (roles[K], error)) error {
	now := g.cfg.Clock()
	if g.cfg.Shared != nil {
		if err := g.syncShared(ctx, now); err != nil {
			return err
		}
	}
	cur := g.cur.Load()
	r, err := f(cur, now)
	if err != nil {
		return err
	}
	s := g.build(cur.version+1, r.active, r.next, r.old, cur.seq, cur.digest, now)
	s.revoked = rotation.LiveRevoked(r.revoked, now)
	if err := g.persist(ctx, s); err != nil {
		return err
	}
	g.publish(s)
	return nil
}

// refuse returns the error of an action refused for id.
func (g *Engine[K, D, P]) refuse(verb, id, why string, args ...any) error {
	return fmt.Errorf("%s: %s %s %s: %w: %s", g.spec.Prefix, verb, g.spec.Noun, id, ErrRefused, fmt.Sprintf(why, args...))
}

// Prepare makes the next key now, as rotation does at half the active
// lifetime, and publishes it at once. A prepared key that was waiting (it
// never signed) is replaced.
func (g *Engine[K, D, P]) Prepare(ctx context.Context) (*Entry[K], error) {
	sp := g.spec
	var prepared, replaced *Entry[K]
	err := g.change(ctx, func(cur *Snapshot[K, P], now time.Time) (roles[K], error) {
		if reason, _ := g.blocked(cur.active); reason != "" {
			return roles[K]{}, fmt.Errorf("%s: prepare %s: %w: %s", sp.Prefix, sp.Noun, ErrRefused, reason)
		}
		k, err := g.kind.Mint(now)
		if err != nil {
			return roles[K]{}, fmt.Errorf("%s: prepare %s: %w", sp.Prefix, sp.Noun, err)
		}
		n := &Entry[K]{Key: k, PublishedAt: now}
		prepared, replaced = n, cur.next
		return roles[K]{active: cur.active, next: n, old: liveOld(cur.old, now), revoked: cur.revoked}, nil
	})
	if err != nil {
		return nil, err
	}
	if replaced != nil {
		g.cfg.Log.Warn(sp.Messages.PreparedReplaced, "replaced", replaced.ID(), sp.IDAttr, prepared.ID())
	}
	attrs := append([]any{sp.IDAttr, prepared.ID()}, g.kind.Describe(prepared)...)
	g.cfg.Log.Info(sp.Messages.PreparedByOperator, append(attrs, g.seqAttrs(g.cur.Load())...)...)
	return prepared, nil
}

// Activate makes the prepared key id the one that signs, now; the
// formerly active one becomes old and stays published until it expires.
// Peers that have not yet received the prepared key (see PublishedAt)
// reject what it signs until they do.
func (g *Engine[K, D, P]) Activate(ctx context.Context, id string) (*Entry[K], error) {
	sp := g.spec
	var activated, previous *Entry[K]
	err := g.change(ctx, func(cur *Snapshot[K, P], now time.Time) (roles[K], error) {
		e, status, err := g.lookup(cur, id, "activate")
		if err != nil {
			if errors.Is(err, sp.ErrUnknown) && cur.next == nil {
				return roles[K]{}, fmt.Errorf("%w (and none is prepared: run prepare first)", err)
			}
			return roles[K]{}, err
		}
		switch {
		case status == StatusActive:
			return roles[K]{}, g.refuse("activate", id, "it is already the active %s", sp.Noun)
		case status == StatusOld:
			return roles[K]{}, g.refuse("activate", id, "it is an old %s; only the prepared one can be activated", sp.Noun)
		case e.Expired(now):
			return roles[K]{}, g.refuse("activate", id, "it expired at %s", e.NotAfter().UTC().Format(time.RFC3339))
		}
		previous = cur.active
		activated = e.WithTimes(e.PublishedAt, now)
		old := liveOld(cur.old, now)
		if !sp.DropExpiredActive || !cur.active.Expired(now) {
			old = append([]*Entry[K]{cur.active}, old...)
		}
		return roles[K]{active: activated, old: old, revoked: cur.revoked}, nil
	})
	if err != nil {
		return nil, err
	}
	g.cfg.Log.Info(sp.Messages.ActivatedByOperator, sp.IDAttr, activated.ID(), "previous", previous.ID(),
		"published_for", activated.ActivatedAt.Sub(activated.PublishedAt).Round(time.Millisecond), "not_after", activated.NotAfter())
	return activated, nil
}

// Taint marks the old key id as compromised. It stays published, so what
// it signed keeps verifying until replaced, but the change is published
// (Changed fires), so that what it signed is replaced. Only an old key can
// be tainted: activate a successor first.
func (g *Engine[K, D, P]) Taint(ctx context.Context, id string) (*Entry[K], error) {
	sp := g.spec
	var tainted *Entry[K]
	err := g.change(ctx, func(cur *Snapshot[K, P], now time.Time) (roles[K], error) {
		e, status, err := g.lookup(cur, id, "taint")
		if err != nil {
			return roles[K]{}, err
		}
		switch {
		case status == StatusActive:
			return roles[K]{}, g.refuse("taint", id, "it is the active %s; prepare and activate a successor first", sp.Noun)
		case status == StatusPrepared:
			return roles[K]{}, g.refuse("taint", id, "it is prepared and has signed nothing; prepare another to replace it")
		case e.Tainted:
			return roles[K]{}, g.refuse("taint", id, "it is already tainted")
		case e.Expired(now):
			return roles[K]{}, g.refuse("taint", id, "it expired at %s", e.NotAfter().UTC().Format(time.RFC3339))
		}
		c := *e
		c.Tainted = true
		tainted = &c
		old := liveOld(cur.old, now)
		for i, o := range old {
			if o.ID() == id {
				old[i] = tainted
			}
		}
		return roles[K]{active: cur.active, next: cur.next, old: old, revoked: cur.revoked}, nil
	})
	if err != nil {
		return nil, err
	}
	attrs := []any{sp.IDAttr, tainted.ID(), "not_after", tainted.NotAfter()}
	g.cfg.Log.Warn(sp.Messages.Tainted, append(attrs, g.seqAttrs(g.cur.Load())...)...)
	return tainted, nil
}

// Revoke removes the tainted old key id: it is no longer published, so
// whatever it signed stops verifying. It is remembered (in the shared
// state too) until it expires, so no server merges it back.
func (g *Engine[K, D, P]) Revoke(ctx context.Context, id string) (*Entry[K], error) {
	sp := g.spec
	var revoked *Entry[K]
	err := g.change(ctx, func(cur *Snapshot[K, P], now time.Time) (roles[K], error) {
		if _, ok := cur.revoked[id]; ok {
			return roles[K]{}, g.refuse("revoke", id, "it is already revoked")
		}
		e, status, err := g.lookup(cur, id, "revoke")
		if err != nil {
			return roles[K]{}, err
		}
		switch {
		case status == StatusActive:
			return roles[K]{}, g.refuse("revoke", id, "it is the active %s; prepare and activate a successor, then taint it first", sp.Noun)
		case status == StatusPrepared:
			return roles[K]{}, g.refuse("revoke", id, "it is prepared, not tainted; prepare another to replace it")
		case !e.Tainted:
			return roles[K]{}, g.refuse("revoke", id, "%s", sp.Messages.RevokeUntainted)
		}
		if g.policy != nil {
			if reason := g.policy.RevokeBlocked(e); reason != "" {
				return roles[K]{}, g.refuse("revoke", id, "%s", reason)
			}
		}
		revoked = e
		var old []*Entry[K]
		for _, o := range liveOld(cur.old, now) {
			if o.ID() != id {
				old = append(old, o)
			}
		}
		rv := maps.Clone(cur.revoked)
		if rv == nil {
			rv = map[string]time.Time{}
		}
		rv[id] = e.NotAfter()
		return roles[K]{active: cur.active, next: cur.next, old: old, revoked: rv}, nil
	})
	if err != nil {
		return nil, err
	}
	g.cfg.Log.Warn(sp.Messages.Revoked, append([]any{sp.IDAttr, revoked.ID()}, g.seqAttrs(g.cur.Load())...)...)
	return revoked, nil
}

// lookup finds id in s and names its status, or returns an error wrapping
// Spec.ErrUnknown.
func (g *Engine[K, D, P]) lookup(s *Snapshot[K, P], id, verb string) (*Entry[K], string, error) {
	sp := g.spec
	switch {
	case id == "":
		return nil, "", fmt.Errorf("%s: %s %s: %w: %s is required", sp.Prefix, verb, sp.Noun, sp.ErrUnknown, sp.IDPhrase)
	case s.active.ID() == id:
		return s.active, StatusActive, nil
	case s.next != nil && s.next.ID() == id:
		return s.next, StatusPrepared, nil
	}
	if i := slices.IndexFunc(s.old, func(e *Entry[K]) bool { return e.ID() == id }); i >= 0 {
		return s.old[i], StatusOld, nil
	}
	return nil, "", fmt.Errorf("%s: %s %s %s: %w", sp.Prefix, verb, sp.Noun, id, sp.ErrUnknown)
}
