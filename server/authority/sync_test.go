package authority_test

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/server/authority"
	"github.com/hallmarkid/hallmark/server/authority/authoritytest"
)

// countingKV counts the reads of the shared state.
type countingKV struct {
	*authoritytest.MemKV
	reads atomic.Int64
}

func (k *countingKV) GetKV(ctx context.Context, key string) ([]byte, error) {
	k.reads.Add(1)
	return k.MemKV.GetKV(ctx, key)
}

// TestSyncNowAdoptsAtOnce: two servers share the state; B runs, A prepares
// a key. B's poll interval is 30 s (toy keys live an hour), so only SyncNow
// can make B publish A's key within the 5 s this test allows; a burst of
// requests costs a round or two, not one each; and a request made before
// Run is served when Run starts.
func TestSyncNowAdoptsAtOnce(t *testing.T) {
	for _, layout := range []authority.Layout{authority.LayoutAuthorities, authority.LayoutKeys} {
		t.Run(layout.String(), func(t *testing.T) {
			sp, clk := spec(layout, false), &clock{now: t0}
			kv := &countingKV{MemKV: authoritytest.NewMemKV(errNotFound)}
			a := open(t, sp, filepath.Join(t.TempDir(), "a"), clk, kv)
			b := open(t, sp, filepath.Join(t.TempDir(), "b"), clk, kv)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			t.Cleanup(func() { cancel(); <-done })

			base := kv.reads.Load() // New reads it too
			b.SyncNow()             // before Run: waits for it
			b.SyncNow()             // and coalesces
			go func() { defer close(done); b.Run(ctx) }()
			waitReads := func(n int64) {
				t.Helper()
				deadline := time.Now().Add(5 * time.Second)
				for kv.reads.Load()-base < n {
					if time.Now().After(deadline) {
						t.Fatalf("B read the shared state %d times, want ≥ %d", kv.reads.Load()-base, n)
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
			waitReads(2) // Run's first round, then the pending request
			time.Sleep(50 * time.Millisecond)
			if got := kv.reads.Load() - base; got != 2 {
				t.Fatalf("two requests before Run: %d reads after Run's first round, want 1 more", got-1)
			}

			changed := b.Changed()
			next, err := a.Prepare(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			before := kv.reads.Load()
			for range 100 {
				b.SyncNow()
			}
			deadline := time.Now().Add(5 * time.Second)
			for roles(b)[next.ID()] != authority.StatusPrepared {
				if time.Now().After(deadline) {
					t.Fatalf("B has not adopted the key A prepared within 5 s (its poll is 30 s): %v", roles(b))
				}
				time.Sleep(5 * time.Millisecond)
			}
			if !fired(changed) {
				t.Error("B adopted the prepared key without signalling Changed")
			}
			time.Sleep(50 * time.Millisecond)
			if n := kv.reads.Load() - before; n > 2 {
				t.Errorf("100 requests in a burst cost %d reads of the shared state, want 1 or 2", n)
			}
		})
	}
}

// picky is a toy kind under a configuration that accepts only the keys it
// minted itself (their IDs start with its tag) and never merges one back:
// two servers configured apart — say, halfway through rolling out a new
// key type — each rewrite the state the other wrote, as a kind with a
// Policy may.
type picky struct {
	toy
	tag string // two hex digits
}

func (p picky) Mint(now time.Time) (*tkey, error) {
	k, err := p.toy.Mint(now)
	if err != nil {
		return nil, err
	}
	k.id = p.tag + k.id[2:]
	return k, nil
}

func (p picky) Place(e *authority.Entry[*tkey], status string, _ bool, _ time.Time) (*authority.Entry[*tkey], authority.Role) {
	if e.ID()[:2] != p.tag {
		return e, authority.RoleDrop
	}
	switch status {
	case authority.StatusActive:
		return e, authority.RoleActive
	case authority.StatusPrepared:
		return e, authority.RoleNext
	}
	return e, authority.RoleOld
}

func (picky) Keep(*tkey) bool                                 { return false }
func (picky) Blocked(*authority.Entry[*tkey]) (string, []any) { return "", nil }
func (picky) RevokeBlocked(*authority.Entry[*tkey]) string    { return "" }

// notifyingKV calls every engine's SyncNow after each successful swap, as
// the server does on the datastore's notifications.
type notifyingKV struct {
	*authoritytest.MemKV
	engines atomic.Pointer[[]*engine]
}

func (k *notifyingKV) SwapKV(ctx context.Context, key string, old, value []byte) (bool, error) {
	ok, err := k.MemKV.SwapKV(ctx, key, old, value)
	if ok {
		if gs := k.engines.Load(); gs != nil {
			for _, g := range *gs {
				g.SyncNow()
			}
		}
	}
	return ok, err
}

// TestSyncNowDoesNotPingPong: two servers whose configurations disagree
// rewrite each other's state on every round; with each write announced,
// SyncNow must not turn that into a loop as fast as the store: a round it
// started that wrote makes the next one wait (1 s, doubling to the poll
// interval).
func TestSyncNowDoesNotPingPong(t *testing.T) {
	sp, clk := spec(authority.LayoutKeys, false), &clock{now: t0}
	kv := &notifyingKV{MemKV: authoritytest.NewMemKV(errNotFound)}
	var gs []*engine
	for _, tag := range []string{"aa", "bb"} {
		dir := filepath.Join(t.TempDir(), tag)
		if err := (authority.Files{Prefix: "toy"}).PrepareDir(dir, true); err != nil {
			t.Fatal(err)
		}
		g, _, err := authority.New(sp, authority.Config{TrustDomain: td, Dir: dir, Clock: clk.Now, Log: nopLog,
			Shared: kv, SharedNotFound: errNotFound}, picky{toy: toy{ttl: time.Hour}, tag: tag})
		if err != nil {
			t.Fatal(err)
		}
		gs = append(gs, g)
	}
	kv.engines.Store(&gs)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, len(gs))
	for _, g := range gs {
		go func() { g.Run(ctx); done <- struct{}{} }()
	}
	start := kv.Writes()
	time.Sleep(2 * time.Second)
	writes := kv.Writes() - start
	cancel()
	for range gs {
		<-done
	}
	t.Logf("%d writes of the shared state in 2 s", writes)
	// Each server: its first round, then writes spaced 1 s, 2 s, ...
	if writes > 10 {
		t.Fatalf("two disagreeing servers wrote the shared state %d times in 2 s, want a handful", writes)
	}
	if writes == 0 {
		t.Fatal("the disagreeing servers never rewrote each other's state: the test proves nothing")
	}
}
