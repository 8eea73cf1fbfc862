package authority

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hallmarkid/hallmark/internal/rotation"
)

// sharedTimeout bounds one read or write of the shared state.
const sharedTimeout = 10 * time.Second

// Engine rotates the keys of one kind. It is safe for concurrent use.
type Engine[K Key, D, P any] struct {
	spec   *Spec
	cfg    Config
	kind   Kind[K, D, P]
	policy Policy[K]       // nil: the defaults Policy describes
	single SingleLayout[K] // nil: none

	cur atomic.Pointer[Snapshot[K, P]] // swapped as a whole, never mutated

	mu            sync.Mutex // serialises state changes; guards the fields that follow
	warnedBlocked bool
	// sharedSeen is the shared state as this engine last read or wrote it
	// (nil: absent): the value its next write must replace.
	sharedSeen []byte

	chMu    sync.Mutex // guards changed
	changed chan struct{}

	// kick wakes Run before its next poll (SyncNow); one pending wake-up
	// stands for any number of requests.
	kick chan struct{}
	// sharedWrites counts this engine's writes of the shared state.
	sharedWrites atomic.Uint64
}

// Opened tells a kind how New found its state.
type Opened[K Key] struct {
	// Created is the first key, made because there was none; nil when
	// the state was loaded.
	Created *Entry[K]
	// Legacy reports that the state came from the single-key layout.
	Legacy bool
}

// New loads the state persisted in cfg.Dir (and, with cfg.Shared, the
// state the servers share, which wins), or makes and persists a first key
// when there is none. Corrupt or mismatched documents are errors, never
// overwritten. New does not rotate: Run does.
func New[K Key, D, P any](spec *Spec, cfg Config, kind Kind[K, D, P]) (*Engine[K, D, P], Opened[K], error) {
	g := &Engine[K, D, P]{spec: spec, cfg: cfg, kind: kind, changed: make(chan struct{}), kick: make(chan struct{}, 1)}
	g.policy, _ = kind.(Policy[K])
	g.single, _ = kind.(SingleLayout[K])
	var op Opened[K]
	ctx := context.Background()
	now := cfg.Clock()

	local, legacy, err := g.loadLocal(now)
	if err != nil {
		return nil, op, err
	}
	op.Legacy = legacy
	base := local
	sharedMissing := false
	if cfg.Shared != nil {
		ds, raw, err := g.readShared(ctx)
		g.sharedSeen = raw
		switch {
		case errors.Is(err, errSharedMissing):
			sharedMissing = true
		case err != nil && local == nil:
			return nil, op, err
		case err != nil:
			cfg.Log.Warn(spec.Messages.SharedUnreadable, "error", err)
		default:
			base = ds
		}
	}

	var s *Snapshot[K, P]
	dirty := false
	if base == nil {
		k, err := kind.Mint(now)
		if err != nil {
			return nil, op, err
		}
		e := &Entry[K]{Key: k, PublishedAt: now, ActivatedAt: now}
		s = g.build(1, e, nil, nil, 0, "", now)
		saved := false
		if cfg.Shared == nil && g.single != nil {
			if saved, err = g.single.SaveSingle(k); err != nil {
				return nil, op, err
			}
		}
		dirty = !saved
		op.Created = e
	} else {
		var d bool
		if s, d, err = g.fromState(base, nil, now); err != nil {
			return nil, op, err
		}
		dirty = d || sharedMissing
	}
	if base != nil && base != local && local != nil {
		// Keys this server signed with survive adoption of the shared
		// state, so that what they signed keeps verifying.
		var had []*Entry[K]
		for _, de := range local.entries {
			if !de.foreign {
				had = append(had, de.e)
			}
		}
		if k := g.keepSigned(s, had, now); k != s {
			s, dirty = k, true
		}
	}
	lost := false
	switch {
	case dirty:
		s.version++
		err := g.persist(ctx, s)
		if lost = errors.Is(err, errSwapLost); err != nil && !lost {
			return nil, op, err
		}
	case base != local:
		// Adopted the shared state as it is: keep a local copy.
		data, err := g.encode(s)
		if err != nil {
			return nil, op, err
		}
		if err := g.writeStateFile(data); err != nil {
			return nil, op, err
		}
	}
	g.cur.Store(s)
	if cfg.Shared != nil && (sharedMissing || lost) {
		// Another server may have written at the same moment (lost: it
		// did): converge on whatever the store holds now.
		g.mu.Lock()
		err := g.retrySwap(func() error { return g.syncShared(ctx, now) })
		g.mu.Unlock()
		if err != nil {
			return nil, op, err
		}
	}
	return g, op, nil
}

// loadLocal reads the state in Dir: the state file, else the single-key
// layout of earlier versions, else nothing (nil, no error).
func (g *Engine[K, D, P]) loadLocal(now time.Time) (ds *decoded[K], legacy bool, err error) {
	data, err := g.readStateFile()
	switch {
	case err == nil:
		ds, err := g.decode(data)
		if err != nil {
			return nil, false, fmt.Errorf("%s: state file %s/%s: %w", g.spec.Prefix, g.cfg.Dir, g.spec.StateFileName, err)
		}
		return ds, false, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, false, err
	}
	if g.single == nil {
		return nil, false, nil
	}
	e, err := g.single.LoadSingle(now)
	if err != nil || e == nil {
		return nil, false, err
	}
	return &decoded[K]{entries: []decodedEntry[K]{{e: e, status: docActive}}}, true, nil
}

// Current returns the current key set.
func (g *Engine[K, D, P]) Current() *Snapshot[K, P] { return g.cur.Load() }

// Changed returns a channel that is closed at the next change of the
// published digest (Kind.Publish).
func (g *Engine[K, D, P]) Changed() <-chan struct{} {
	g.chMu.Lock()
	defer g.chMu.Unlock()
	return g.changed
}

// Run rotates the keys until ctx is done: it wakes when the next step is
// due, when SyncNow asks, and, with Config.Shared, every poll interval to
// pick up what other servers did (a fallback where SyncNow is wired to the
// store's change notifications), and calls Rotate. Errors are logged and
// retried.
func (g *Engine[K, D, P]) Run(ctx context.Context) {
	var (
		kicked bool          // the round about to run is SyncNow's
		calm   time.Duration // how long SyncNow's next round waits
	)
	for {
		poll := rotation.PollInterval(g.cur.Load().active.Lifetime())
		wait := poll
		writes := g.sharedWrites.Load()
		if err := g.Rotate(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			g.cfg.Log.Error(g.spec.Messages.RunFailed, "error", err, "retry_in", wait)
		} else {
			wait = g.nextWake()
		}
		if kicked {
			calm = calmAfter(calm, g.sharedWrites.Load() != writes, poll)
		}
		t := time.NewTimer(wait)
		kicked = false
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-g.kick:
			kicked = true
			if calm > 0 && !sleep(ctx, t, calm) {
				return
			}
		}
		t.Stop()
	}
}

// minCalm is the first wait of SyncNow's rounds after one that wrote.
const minCalm = time.Second

// calmAfter returns how long SyncNow's next round waits, after one that
// wrote the shared state or not. A round started by another server's
// write that writes in turn is what servers whose configurations disagree
// do to each other (each rewrites what the other wrote, as Policy.Place
// may): were every such round announced and answered at once, they would
// rewrite the state as fast as the store allows. So each round SyncNow
// started that wrote doubles the wait of the next (from minCalm up to the
// poll interval, where they would meet anyway); one that only read ends
// it.
func calmAfter(calm time.Duration, wrote bool, poll time.Duration) time.Duration {
	if !wrote {
		return 0
	}
	return max(min(2*calm, poll), min(minCalm, poll))
}

// sleep waits d, or until t fires, whichever comes first; false when ctx
// ended first.
func sleep(ctx context.Context, t *time.Timer, d time.Duration) bool {
	c := time.NewTimer(d)
	defer c.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-c.C:
	}
	return true
}

// SyncNow asks Run to adopt the shared state (and take any step due) now
// rather than at its next poll: call it when the store reports that
// another server wrote Spec.SharedKey. It never blocks; requests made
// before Run gets to them count as one, so a burst costs one round. A
// round that finds nothing new reads the shared state once and writes
// nothing. After a round it started that wrote the shared state, the next
// waits a while (calmAfter). A request made before Run starts waits for
// it.
func (g *Engine[K, D, P]) SyncNow() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// nextWake returns how long Run may sleep before the next step is due.
func (g *Engine[K, D, P]) nextWake() time.Duration {
	s := g.cur.Load()
	now := g.cfg.Clock()
	a := s.active
	var events []time.Time
	if s.next == nil {
		if reason, _ := g.blocked(a); reason == "" {
			p, _ := rotation.Schedule(a.Key.NotBefore(), a.NotAfter(), now)
			events = append(events, p)
		}
	} else {
		_, act := rotation.Schedule(a.Key.NotBefore(), a.NotAfter(), s.next.PublishedAt)
		events = append(events, act, s.next.NotAfter())
	}
	events = append(events, a.NotAfter())
	for _, e := range s.old {
		events = append(events, e.NotAfter())
	}
	wait := time.Hour
	if g.cfg.Shared != nil {
		wait = rotation.PollInterval(a.Lifetime())
	}
	for _, e := range events {
		if d := e.Sub(now); d > 0 && d < wait {
			wait = d
		}
	}
	// A little late rather than early: Rotate compares with the clock.
	return max(wait+5*time.Millisecond, 10*time.Millisecond)
}

// blocked returns why no successor of active can be made ("" when one
// can).
func (g *Engine[K, D, P]) blocked(active *Entry[K]) (string, []any) {
	if g.policy == nil {
		return "", nil
	}
	return g.policy.Blocked(active)
}

// seqAttrs returns the log attributes of s's sequence, for layouts that
// persist it.
func (g *Engine[K, D, P]) seqAttrs(s *Snapshot[K, P]) []any {
	if g.spec.Layout != LayoutAuthorities {
		return nil
	}
	return []any{"bundle_sequence", s.seq}
}
