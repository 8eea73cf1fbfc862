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
