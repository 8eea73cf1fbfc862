package jwtsigner_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/server/authority/authoritytest"
	"github.com/hallmarkid/hallmark/server/jwtsigner"
)

// Two servers on one shared store sign with the same key and publish the
// same bundle through a whole rotation, even when both prepare a successor
// at the same instant from the same view: the store takes the first write
// only, and the other adopts it instead of overwriting it. Every token
// either signed verifies with both bundles until it expires.
func TestSharedSignersAgree(t *testing.T) {
	kv := newMemKV()
	clkA, clkB := newClock(), newClock()
	a := rotating(t, filepath.Join(t.TempDir(), "jwt"), clkA, kv)
	b := rotating(t, filepath.Join(t.TempDir(), "jwt"), clkB, kv)
	var toks []jwtsigner.JWTSVID
	check := func(step string) {
		t.Helper()
		if a.ActiveKeyID() != b.ActiveKeyID() || !slices.Equal(kids(a), kids(b)) {
			t.Fatalf("%s: A active %s keys %v; B active %s keys %v", step, a.ActiveKeyID(), kids(a), b.ActiveKeyID(), kids(b))
		}
		toks = append(toks, sign(t, a, time.Minute), sign(t, b, time.Minute))
		for _, tok := range toks {
			if !tok.ExpiresAt.After(clkA.Now()) {
				continue
			}
			for _, s := range []*jwtsigner.Signer{a, b} {
				if err := validateAt(tok.Token, s, clkA.Now()); err != nil {
					t.Fatalf("%s: token of %s: %v", step, tok.KeyID, err)
				}
			}
		}
	}
	check("start")
	advance := func(d time.Duration) { clkA.Add(d); clkB.Add(d) }

	advance(keyTTL / 2)
	writes := kv.Writes()
	kv.HoldReads(2)
	var wg sync.WaitGroup
	for _, s := range []*jwtsigner.Signer{a, b} {
		wg.Go(func() {
			if err := s.Rotate(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := kv.Writes() - writes; n != 1 {
		t.Fatalf("the store was written %d times by two racing preparations, want 1 (the loser overwrote the winner)", n)
	}
	// The store holds what both publish: a third server reads it.
	if c := rotating(t, filepath.Join(t.TempDir(), "jwt"), clkA, kv); a.NextKeyID() == "" ||
		a.NextKeyID() != b.NextKeyID() || a.NextKeyID() != c.NextKeyID() {
		t.Fatalf("prepared keys differ right after the race: A %q, B %q, the store %q", a.NextKeyID(), b.NextKeyID(), c.NextKeyID())
	}
	check("prepared")

	advance(keyTTL / 3)
	mustRotate(t, a, b)
	check("activated")
	advance(time.Minute)
	mustRotate(t, a, b)
	check("settled")
	advance(keyTTL / 6)
	mustRotate(t, a, b)
	check("pruned")
	if slices.Contains(kids(a), toks[0].KeyID) {
		t.Fatalf("first key not pruned: %v", kids(a))
	}

	// A third server joining adopts the shared keys.
	c := rotating(t, filepath.Join(t.TempDir(), "jwt"), clkA, kv)
	if c.ActiveKeyID() != a.ActiveKeyID() || !slices.Equal(kids(a), kids(c)) {
		t.Fatal("joining server did not adopt the shared keys")
	}
}

// view is one server's access to a memKV; detached, it reads and writes a
// private copy (a server talking to a stale replica: split brain).
type view struct {
	kv      *memKV
	mu      sync.Mutex
	private map[string][]byte // nil while attached
}

func (v *view) GetKV(ctx context.Context, key string) ([]byte, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.private == nil {
		return v.kv.GetKV(ctx, key)
	}
	b, ok := v.private[key]
	if !ok {
		return nil, errKVNotFound
	}
	return slices.Clone(b), nil
}

func (v *view) SwapKV(ctx context.Context, key string, old, value []byte) (bool, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.private == nil {
		return v.kv.SwapKV(ctx, key, old, value)
	}
	return authoritytest.Swap(v.private, key, old, value), nil
}

func (v *view) detach() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.private = v.kv.Snapshot()
}

func (v *view) attach() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.private = nil
}

// A key a server signed with is never dropped while its tokens live, even
// when the servers diverged (each activated a successor of its own) and
// the shared state holds only the other's.
func TestSharedKeepsKeysThatSigned(t *testing.T) {
	kv := newMemKV()
	clk := newClock()
	va := &view{kv: kv}
	a := rotating(t, filepath.Join(t.TempDir(), "jwt"), clk, va)
	b := rotating(t, filepath.Join(t.TempDir(), "jwt"), clk, kv)
	va.detach()
	clk.Add(keyTTL / 2)
	mustRotate(t, a, b)
	clk.Add(keyTTL / 3)
	mustRotate(t, a, b)
	if a.ActiveKeyID() == b.ActiveKeyID() {
		t.Fatal("the servers did not diverge")
	}
	tokA := sign(t, a, time.Minute)
	va.attach()
	mustRotate(t, a, b)
	if a.ActiveKeyID() != b.ActiveKeyID() || !slices.Equal(kids(a), kids(b)) {
		t.Fatalf("not converged: A %s %v, B %s %v", a.ActiveKeyID(), kids(a), b.ActiveKeyID(), kids(b))
	}
	if !slices.Contains(kids(b), tokA.KeyID) {
		t.Fatalf("the key A signed with (%s) is missing from the agreed bundle %v", tokA.KeyID, kids(b))
	}
	for _, s := range []*jwtsigner.Signer{a, b} {
		if err := validateAt(tokA.Token, s, clk.Now()); err != nil {
			t.Fatalf("token A signed while diverged: %v", err)
		}
	}
	// It leaves at its own expiry.
	clk.Add(keyTTL/6 + keyTTL/2)
	mustRotate(t, a, b)
	if slices.Contains(kids(a), tokA.KeyID) || !slices.Equal(kids(a), kids(b)) {
		t.Fatalf("after expiry: A %v B %v", kids(a), kids(b))
	}
}

// Rotation steps fail while the shared store is down (nothing changes, so
// the servers cannot diverge), and resume when it is back.
func TestSharedStoreDownDuringRotation(t *testing.T) {
	kv := newMemKV()
	clk := newClock()
	s := rotating(t, filepath.Join(t.TempDir(), "jwt"), clk, kv)
	k1 := s.ActiveKeyID()
	kv.SetFailing(true)
	clk.Add(keyTTL / 2)
	if err := s.Rotate(context.Background()); err == nil || !strings.Contains(err.Error(), "memkv: down") {
		t.Fatalf("Rotate with the store down: %v", err)
	}
	if s.NextKeyID() != "" || sign(t, s, 0).KeyID != k1 {
		t.Fatal("state changed while the store was down")
	}
	kv.SetFailing(false)
	mustRotate(t, s)
	if s.NextKeyID() == "" {
		t.Fatal("no successor after the store came back")
	}
}

// The shared store unreachable at start: a server with a local copy starts
// from it; one without refuses to start.
func TestSharedStoreDownAtStart(t *testing.T) {
	kv := newMemKV()
	clk := newClock()
	dir := filepath.Join(t.TempDir(), "jwt")
	s1 := rotating(t, dir, clk, kv)
	kv.SetFailing(true)
	s2 := rotating(t, dir, clk, kv)
	if s2.ActiveKeyID() != s1.ActiveKeyID() {
		t.Fatal("did not start from the local copy")
	}
	_, err := jwtsigner.New(jwtsigner.Config{TrustDomain: td, Dir: filepath.Join(t.TempDir(), "jwt"), Clock: clk.Now,
		Shared: kv, SharedNotFound: errKVNotFound})
	if err == nil || !strings.Contains(err.Error(), "read shared state") {
		t.Fatalf("err = %v", err)
	}
}

func TestRunRotatesOnRealClock(t *testing.T) {
	s, err := jwtsigner.New(jwtsigner.Config{TrustDomain: td, Dir: filepath.Join(t.TempDir(), "jwt"), KeyTTL: 600 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	k1 := s.ActiveKeyID()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	deadline := time.After(5 * time.Second)
	var sawNext bool
	for s.ActiveKeyID() == k1 {
		select {
		case <-s.Changed():
			sawNext = sawNext || s.NextKeyID() != ""
		case <-deadline:
			t.Fatal("Run did not rotate within 5 s")
		}
	}
	if !sawNext {
		t.Fatal("activated without a published next key first")
	}
}

// An operator prepares a key on one server while another prepares on
// schedule at the same instant. Whichever loses the swap redoes its step on
// what the other stored: both end up with the operator's key prepared.
func TestSharedRacingOperatorPrepare(t *testing.T) {
	kv := newMemKV()
	clk := newClock()
	a := rotating(t, filepath.Join(t.TempDir(), "jwt"), clk, kv)
	b := rotating(t, filepath.Join(t.TempDir(), "jwt"), clk, kv)
	clk.Add(keyTTL / 2)
	kv.HoldReads(2)
	var (
		wg   sync.WaitGroup
		info jwtsigner.KeyInfo
	)
	wg.Go(func() {
		var err error
		if info, err = a.PrepareKey(context.Background()); err != nil {
			t.Error(err)
		}
	})
	wg.Go(func() {
		if err := b.Rotate(context.Background()); err != nil {
			t.Error(err)
		}
	})
	wg.Wait()
	mustRotate(t, b) // b's next poll
	if a.NextKeyID() != info.ID || b.NextKeyID() != info.ID || !slices.Equal(kids(a), kids(b)) {
		t.Fatalf("want the operator's key %s prepared on both: A %s %v, B %s %v", info.ID, a.NextKeyID(), kids(a), b.NextKeyID(), kids(b))
	}
}
