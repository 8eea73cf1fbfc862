package ca_test

import (
	"context"
	"crypto/elliptic"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/hallmarkid/hallmark/server/authority/authoritytest"
	"github.com/hallmarkid/hallmark/server/ca"
)

var errKVNotFound = errors.New("memkv: not found")

// memKV is the in-memory KV store of the engine's tests.
type memKV = authoritytest.MemKV

func newMemKV() *memKV { return authoritytest.NewMemKV(errKVNotFound) }

func sharedCA(t *testing.T, kv ca.KVStore, clk *fixedClock) *ca.CA {
	t.Helper()
	c, err := ca.New(ca.Config{TrustDomain: td, Dir: filepath.Join(t.TempDir(), "ca"), Clock: clk.Now, TTL: time.Hour,
		Shared: kv, SharedNotFound: errKVNotFound})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func rotateAll(t *testing.T, cs ...*ca.CA) {
	t.Helper()
	for _, c := range cs {
		if err := c.Rotate(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
}

// agree fails unless a and b have the same active authority and bundle.
func agree(t *testing.T, what string, a, b *ca.CA) {
	t.Helper()
	if !a.Certificate().Equal(b.Certificate()) {
		t.Fatalf("%s: active authorities differ: %s vs %s", what, skid(a.Certificate()), skid(b.Certificate()))
	}
	if !slices.Equal(bundleIDs(a.Bundle()), bundleIDs(b.Bundle())) {
		t.Fatalf("%s: bundles differ: %v vs %v", what, bundleIDs(a.Bundle()), bundleIDs(b.Bundle()))
	}
}

// crossVerify checks that an SVID from each CA verifies against the
// other's bundle.
func crossVerify(t *testing.T, now time.Time, a, b *ca.CA) {
	t.Helper()
	key := ecKey(t, elliptic.P256()).Public()
	for _, p := range [][2]*ca.CA{{a, b}, {b, a}} {
		chain, err := p[0].SignX509SVID(t.Context(), ca.X509SVIDParams{ID: wlID, PublicKey: key, TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := x509svid.Verify(chain, x509bundle.FromX509Authorities(td, p[1].Bundle()), x509svid.WithTime(now)); err != nil {
			t.Fatalf("SVID of one server does not verify against the other's bundle: %v", err)
		}
	}
}

func TestSharedStartAgrees(t *testing.T) {
	kv := newMemKV()
	clk := &fixedClock{now: t0}
	a := sharedCA(t, kv, clk)
	b := sharedCA(t, kv, clk)
	agree(t, "after start", a, b)
	crossVerify(t, t0, a, b)
}

// TestSharedRacingPrepare: two servers prepare at the same instant from the
// same view. The store takes the first write only; the other server loses
// its swap, adopts the stored candidate and drops its own, so both publish
// the same prepared authority at once, and rotate together from then on.
func TestSharedRacingPrepare(t *testing.T) {
	kv := newMemKV()
	clk := &fixedClock{now: t0}
	a := sharedCA(t, kv, clk)
	b := sharedCA(t, kv, clk)
	first := a.Certificate()

	clk.Set(t0.Add(31 * time.Minute))
	writes := kv.Writes()
	kv.HoldReads(2)
	var wg sync.WaitGroup
	for _, c := range []*ca.CA{a, b} {
		wg.Go(func() {
			if err := c.Rotate(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := kv.Writes() - writes; n != 1 {
		t.Fatalf("the store was written %d times by two racing preparations, want 1 (the loser overwrote the winner)", n)
	}
	agree(t, "right after the race", a, b)
	if len(a.Bundle()) != 2 {
		t.Fatalf("bundle holds %d authorities after the race, want 2 (the losing candidate dropped)", len(a.Bundle()))
	}
	prepared := func(c *ca.CA) string {
		for _, i := range c.Authorities() {
			if i.Status == ca.StatusPrepared {
				return i.ID
			}
		}
		return ""
	}
	// The store holds what both publish: a third server reads it.
	c := sharedCA(t, kv, clk)
	if p := prepared(a); p == "" || p != prepared(b) || p != prepared(c) {
		t.Fatalf("prepared authorities differ: a %q, b %q, the store %q", p, prepared(b), prepared(c))
	}

	clk.Set(t0.Add(32 * time.Minute))
	rotateAll(t, a, b)
	agree(t, "after a re-read", a, b)
	crossVerify(t, clk.Now(), a, b)

	// Activation happens on both, on the same authority.
	clk.Set(t0.Add(51 * time.Minute))
	rotateAll(t, a, b)
	agree(t, "after activation", a, b)
	if a.Certificate().Equal(first) {
		t.Fatal("not activated")
	}
	crossVerify(t, clk.Now(), a, b)

	// Several more rotations, with the servers taking turns at being first.
	for i := range 6 {
		clk.Set(clk.Now().Add(10 * time.Minute))
		if i%2 == 0 {
			rotateAll(t, a, b)
		} else {
			rotateAll(t, b, a)
		}
		rotateAll(t, a, b)
		agree(t, "rotation "+time.Duration(i).String(), a, b)
		crossVerify(t, clk.Now(), a, b)
	}
	if a.BundleSequence() != b.BundleSequence() {
		t.Errorf("BundleSequence %d vs %d", a.BundleSequence(), b.BundleSequence())
	}
}

// staleView is one server's connection to a memKV that can be frozen on
// its own: that server then reads an old view while the others move on.
type staleView struct {
	kv     *memKV
	mu     sync.Mutex
	frozen map[string][]byte
}

func (v *staleView) freeze() {
	m := v.kv.Snapshot()
	v.mu.Lock()
	v.frozen = m
	v.mu.Unlock()
}

func (v *staleView) thaw() {
	v.mu.Lock()
	v.frozen = nil
	v.mu.Unlock()
}

func (v *staleView) GetKV(ctx context.Context, key string) ([]byte, error) {
	v.mu.Lock()
	f := v.frozen
	v.mu.Unlock()
	if f == nil {
		return v.kv.GetKV(ctx, key)
	}
	val, ok := f[key]
	if !ok {
		return nil, errKVNotFound
	}
	return slices.Clone(val), nil
}

// SwapKV overwrites whatever is stored, as a server of an earlier version
// did (PutKV): the stale view then loses what others wrote.
func (v *staleView) SwapKV(ctx context.Context, key string, _, value []byte) (bool, error) {
	return true, v.kv.PutKV(ctx, key, value)
}

// TestSharedKeepsWhatSigned: a server activated (and signed with) an
// authority, then another server acting on a stale view (an earlier
// version, which wrote without comparing) overwrote the store without it. The authority stays in every bundle until it expires,
// so what it signed keeps verifying.
func TestSharedKeepsWhatSigned(t *testing.T) {
	kv := newMemKV()
	clk := &fixedClock{now: t0}
	a := sharedCA(t, kv, clk)
	bView := &staleView{kv: kv}
	b := sharedCA(t, bView, clk)
	first := a.Certificate()

	bView.freeze() // b keeps seeing the store as it is now
	clk.Set(t0.Add(31 * time.Minute))
	rotateAll(t, a) // prepares
	clk.Set(t0.Add(51 * time.Minute))
	rotateAll(t, a) // activates
	aActive := a.Certificate()
	if aActive.Equal(first) {
		t.Fatal("a did not activate its prepared authority")
	}
	chain, err := a.SignX509SVID(t.Context(), ca.X509SVIDParams{ID: wlID, PublicKey: ecKey(t, elliptic.P256()).Public(), TTL: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	// b, on its stale view, prepares a candidate of its own and overwrites
	// the store, which loses a's activation.
	rotateAll(t, b)
	bView.thaw()

	rotateAll(t, a, b, a, b)
	agree(t, "after the split", a, b)
	for _, c := range []*ca.CA{a, b} {
		if !slices.Contains(bundleIDs(c.Bundle()), skid(aActive)) {
			t.Fatalf("the authority a signed with is missing from a bundle: %v", bundleIDs(c.Bundle()))
		}
		if _, _, err := x509svid.Verify(chain, x509bundle.FromX509Authorities(td, c.Bundle()), x509svid.WithTime(clk.Now())); err != nil {
			t.Fatalf("SVID signed by %s no longer verifies: %v", skid(aActive), err)
		}
	}
	// They rotate on together, and the lost authority ages out.
	clk.Set(aActive.NotAfter)
	rotateAll(t, a, b, a, b)
	agree(t, "after expiry", a, b)
	if slices.Contains(bundleIDs(a.Bundle()), skid(aActive)) {
		t.Fatal("expired authority not pruned")
	}
	crossVerify(t, clk.Now(), a, b)
}

// TestSharedJoinsExisting: a server that ran alone (its own root signed
// agent SVIDs) joins servers sharing a store: it adopts the shared active
// authority and its own root stays in every bundle until it expires.
func TestSharedJoinsExisting(t *testing.T) {
	kv := newMemKV()
	clk := &fixedClock{now: t0}
	a := sharedCA(t, kv, clk)

	dir := filepath.Join(t.TempDir(), "ca")
	alone, err := ca.New(ca.Config{TrustDomain: td, Dir: dir, Clock: clk.Now, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	own := alone.Certificate()
	b, err := ca.New(ca.Config{TrustDomain: td, Dir: dir, Clock: clk.Now, TTL: time.Hour, Shared: kv, SharedNotFound: errKVNotFound})
	if err != nil {
		t.Fatal(err)
	}
	if !b.Certificate().Equal(a.Certificate()) {
		t.Fatal("the joining server did not adopt the shared active authority")
	}
	rotateAll(t, a)
	agree(t, "after join", a, b)
	if !slices.Contains(bundleIDs(a.Bundle()), skid(own)) {
		t.Fatal("the joining server's root is not in the shared bundle")
	}
	clk.Set(own.NotAfter)
	rotateAll(t, a, b)
	if slices.Contains(bundleIDs(b.Bundle()), skid(own)) {
		t.Fatal("expired root not pruned")
	}
}

// TestSharedStoreDown: a store that fails makes Rotate fail (and retry)
// without changing anything.
func TestSharedStoreDown(t *testing.T) {
	kv := &failingKV{memKV: newMemKV()}
	clk := &fixedClock{now: t0}
	c := sharedCA(t, kv, clk)
	before := bundleIDs(c.Bundle())
	kv.fail(true)
	clk.Set(t0.Add(31 * time.Minute))
	if err := c.Rotate(t.Context()); err == nil {
		t.Fatal("Rotate succeeded with the store down")
	}
	if !slices.Equal(bundleIDs(c.Bundle()), before) {
		t.Fatal("bundle changed while the store was down")
	}
	kv.fail(false)
	if err := c.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(c.Bundle()) != 2 {
		t.Fatal("no preparation after the store came back")
	}
}

type failingKV struct {
	*memKV
	mu      sync.Mutex
	failing bool
}

var errDown = errors.New("store down")

func (k *failingKV) fail(v bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.failing = v
}

func (k *failingKV) GetKV(ctx context.Context, key string) ([]byte, error) {
	k.mu.Lock()
	f := k.failing
	k.mu.Unlock()
	if f {
		return nil, errDown
	}
	return k.memKV.GetKV(ctx, key)
}

func (k *failingKV) SwapKV(ctx context.Context, key string, old, v []byte) (bool, error) {
	k.mu.Lock()
	f := k.failing
	k.mu.Unlock()
	if f {
		return false, errDown
	}
	return k.memKV.SwapKV(ctx, key, old, v)
}

// TestSharedRacingOperatorPrepare: an operator prepares an authority on one
// server while another prepares on schedule at the same instant. Whichever
// loses the swap redoes its step on what the other stored: both end up
// with the operator's authority prepared.
func TestSharedRacingOperatorPrepare(t *testing.T) {
	kv := newMemKV()
	clk := &fixedClock{now: t0}
	a := sharedCA(t, kv, clk)
	b := sharedCA(t, kv, clk)
	clk.Set(t0.Add(31 * time.Minute))
	kv.HoldReads(2)
	var (
		wg   sync.WaitGroup
		info ca.AuthorityInfo
	)
	wg.Go(func() {
		var err error
		if info, err = a.PrepareAuthority(context.Background()); err != nil {
			t.Error(err)
		}
	})
	wg.Go(func() {
		if err := b.Rotate(context.Background()); err != nil {
			t.Error(err)
		}
	})
	wg.Wait()
	rotateAll(t, b) // b's next poll
	agree(t, "after the race", a, b)
	for _, c := range []*ca.CA{a, b} {
		if got := c.Authorities(); len(got) != 2 || got[1].ID != info.ID || got[1].Status != ca.StatusPrepared {
			t.Fatalf("authorities %+v, want the operator's %s prepared", got, info.ID)
		}
	}
}
