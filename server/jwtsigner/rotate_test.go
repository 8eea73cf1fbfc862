package jwtsigner_test

import (
	"bytes"
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/server/jwtsigner"
)

// fakeClock is a settable clock. Tests start it at the real time so that
// go-spiffe, which checks exp against time.Now, accepts tokens it signed.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *fakeClock { return &fakeClock{now: time.Now().Truncate(time.Second)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

var errKVNotFound = errors.New("memkv: not found")

// memKV is an in-memory KV store with datastore.KV's contract. holdReads
// makes the next reads wait for each other, so that signers act on the
// same view at the same instant (a genuine race); failing makes every call
// fail.
type memKV struct {
	mu      sync.Mutex
	m       map[string][]byte
	gate    *readGate // nil: reads do not wait
	writes  int       // successful writes
	failing bool
}

// readGate holds n reads until all n have read.
type readGate struct {
	n    int
	open chan struct{}
}

func newMemKV() *memKV { return &memKV{m: map[string][]byte{}} }

// holdReads makes the next n reads (of any key) return only once all n
// have read, each what the store held when it read.
func (k *memKV) holdReads(n int) {
	k.set(func(k *memKV) { k.gate = &readGate{n: n, open: make(chan struct{})} })
}

func (k *memKV) GetKV(ctx context.Context, key string) ([]byte, error) {
	k.mu.Lock()
	if k.failing {
		k.mu.Unlock()
		return nil, errors.New("memkv: down")
	}
	v, ok := k.m[key]
	v = slices.Clone(v)
	g := k.gate
	if g != nil {
		if g.n--; g.n == 0 {
			close(g.open)
			k.gate = nil
		}
	}
	k.mu.Unlock()
	if g != nil {
		select {
		case <-g.open:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if !ok {
		return nil, errKVNotFound
	}
	return v, nil
}

func (k *memKV) SwapKV(_ context.Context, key string, old, value []byte) (bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.failing {
		return false, errors.New("memkv: down")
	}
	return swapIn(k.m, key, old, value, &k.writes), nil
}

// swapIn is SwapKV on m, counting successful writes in writes.
func swapIn(m map[string][]byte, key string, old, value []byte, writes *int) bool {
	cur, ok := m[key]
	if (old == nil && ok) || (old != nil && (!ok || !bytes.Equal(cur, old))) {
		return false
	}
	m[key] = slices.Clone(value)
	*writes++
	return true
}

func (k *memKV) writeCount() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.writes
}

func (k *memKV) set(f func(k *memKV)) {
	k.mu.Lock()
	defer k.mu.Unlock()
	f(k)
}

const keyTTL = time.Hour

func rotating(t *testing.T, dir string, clk *fakeClock, kv jwtsigner.KVStore) *jwtsigner.Signer {
	t.Helper()
	cfg := jwtsigner.Config{TrustDomain: td, Dir: dir, KeyTTL: keyTTL, Clock: clk.Now}
	if kv != nil {
		cfg.Shared, cfg.SharedNotFound = kv, errKVNotFound
	}
	s, err := jwtsigner.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustRotate(t *testing.T, ss ...*jwtsigner.Signer) {
	t.Helper()
	for _, s := range ss {
		if err := s.Rotate(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

func sign(t *testing.T, s *jwtsigner.Signer, ttl time.Duration) jwtsigner.JWTSVID {
	t.Helper()
	tok, err := s.SignJWTSVID(context.Background(), jwtsigner.JWTSVIDParams{
		ID: spiffeid.RequireFromString("spiffe://example.org/w"), Audience: []string{"svc"}, TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// validateAt checks tok the way a relying party with s's bundle does
// (go-spiffe's rules) at the fake time at: known kid, signature, aud, exp
// and iat.
func validateAt(tok string, s *jwtsigner.Signer, at time.Time) error {
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256})
	if err != nil {
		return err
	}
	pub, ok := s.JWTAuthorities()[parsed.Headers[0].KeyID]
	if !ok {
		return fmt.Errorf("kid %q not in the bundle", parsed.Headers[0].KeyID)
	}
	var c jwt.Claims
	if err := parsed.Claims(pub, &c); err != nil {
		return err
	}
	if c.Expiry == nil {
		return errors.New("no exp")
	}
	return c.ValidateWithLeeway(jwt.Expected{AnyAudience: []string{"svc"}, Time: at}, 0)
}

func kids(s *jwtsigner.Signer) []string {
	return slices.Sorted(maps.Keys(s.JWTAuthorities()))
}

func fired(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// One full cycle on a fake clock: prepare and publish at 1/2, activate at
// 5/6, prune at expiry; a token signed before the rotation validates after
// it with the published bundle until it expires, and tokens never outlive
// their key.
func TestRotationCycle(t *testing.T) {
	clk := newClock()
	start := clk.Now()
	s := rotating(t, filepath.Join(t.TempDir(), "jwt"), clk, nil)
	k1 := s.ActiveKeyID()

	ch := s.Changed()
	clk.Add(keyTTL/2 - time.Second)
	mustRotate(t, s)
	if len(kids(s)) != 1 || fired(ch) {
		t.Fatalf("before 1/2: keys %v, changed %v", kids(s), fired(ch))
	}

	clk.Add(time.Second)
	mustRotate(t, s)
	k2 := s.NextKeyID()
	if k2 == "" || s.ActiveKeyID() != k1 || len(kids(s)) != 2 || !fired(ch) {
		t.Fatalf("at 1/2: active %s next %q keys %v changed %v", s.ActiveKeyID(), k2, kids(s), fired(ch))
	}
	before := sign(t, s, keyTTL/3+time.Minute)
	long := sign(t, s, jwtsigner.MaxTTL)
	if before.KeyID != k1 {
		t.Fatalf("signed with %s before activation, want %s", before.KeyID, k1)
	}
	if want := start.Add(keyTTL); !long.ExpiresAt.Equal(want) {
		t.Fatalf("a 24h token expires at %s, want the key's expiry %s", long.ExpiresAt, want)
	}

	ch = s.Changed()
	clk.Add(keyTTL/3 - time.Second) // 5/6 less a second
	mustRotate(t, s)
	if s.ActiveKeyID() != k1 || fired(ch) {
		t.Fatal("activated before 5/6")
	}
	clk.Add(time.Second)
	mustRotate(t, s)
	if s.ActiveKeyID() != k2 || s.NextKeyID() != "" || len(kids(s)) != 2 || !fired(ch) {
		t.Fatalf("at 5/6: active %s (want %s) next %q keys %v changed %v", s.ActiveKeyID(), k2, s.NextKeyID(), kids(s), fired(ch))
	}
	after := sign(t, s, 0)
	if after.KeyID != k2 {
		t.Fatalf("signed with %s after activation, want %s", after.KeyID, k2)
	}
	for _, tok := range []jwtsigner.JWTSVID{before, long, after} {
		if err := validateAt(tok.Token, s, clk.Now()); err != nil {
			t.Fatalf("token of key %s does not validate after the rotation: %v", tok.KeyID, err)
		}
	}

	ch = s.Changed()
	clk.Add(keyTTL/6 - time.Second)
	mustRotate(t, s)
	if !slices.Contains(kids(s), k1) {
		t.Fatal("old key pruned before it expired")
	}
	clk.Add(time.Second)
	mustRotate(t, s)
	if slices.Contains(kids(s), k1) || !fired(ch) {
		t.Fatalf("old key not pruned at expiry: keys %v", kids(s))
	}
	if err := validateAt(before.Token, s, clk.Now()); err == nil {
		t.Fatal("token of a pruned key still validates")
	}
	// The next cycle is scheduled from the new key's own lifetime.
	clk.Add(keyTTL/2 - keyTTL/3 - keyTTL/6 + keyTTL/2 - time.Second)
	mustRotate(t, s)
	if s.NextKeyID() != "" {
		t.Fatal("prepared the third key early")
	}
	clk.Add(2 * time.Second)
	mustRotate(t, s)
	if s.NextKeyID() == "" {
		t.Fatal("third key not prepared at half of the second key's lifetime")
	}
}

// Keys, roles and schedule survive a restart; the state file replaces the
// single key file and is owner-only.
func TestRotationStatePersists(t *testing.T) {
	clk := newClock()
	dir := filepath.Join(t.TempDir(), "jwt")
	s1 := rotating(t, dir, clk, nil)
	clk.Add(keyTTL / 2)
	mustRotate(t, s1)
	tok := sign(t, s1, 0)

	s2 := rotating(t, dir, clk, nil)
	if s2.ActiveKeyID() != s1.ActiveKeyID() || s2.NextKeyID() != s1.NextKeyID() || !slices.Equal(kids(s1), kids(s2)) {
		t.Fatalf("after restart: active %s next %s, want %s %s", s2.ActiveKeyID(), s2.NextKeyID(), s1.ActiveKeyID(), s1.NextKeyID())
	}
	if err := validateAt(tok.Token, s2, clk.Now()); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, jwtsigner.StateFileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v %v, want mode 0600", err, fi)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("directory holds %d files, want only the state file", len(ents))
	}
	clk.Add(keyTTL / 3)
	mustRotate(t, s2)
	if s2.ActiveKeyID() != s1.NextKeyID() {
		t.Fatal("the restarted signer did not activate the key prepared before the restart")
	}
}

// A server down for longer than a key's lifetime signs nothing with the
// expired key, and replaces it at its first rotation step.
func TestRestartAfterExpiry(t *testing.T) {
	clk := newClock()
	dir := filepath.Join(t.TempDir(), "jwt")
	s1 := rotating(t, dir, clk, nil)
	clk.Add(keyTTL / 2)
	mustRotate(t, s1) // state file layout
	clk.Add(3 * keyTTL)
	s2 := rotating(t, dir, clk, nil)
	_, err := s2.SignJWTSVID(context.Background(), jwtsigner.JWTSVIDParams{ID: spiffeid.RequireFromString("spiffe://example.org/w"), Audience: []string{"a"}})
	if err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("signing with an expired key: %v", err)
	}
	mustRotate(t, s2)
	if ks := kids(s2); len(ks) != 1 || ks[0] == s1.ActiveKeyID() || ks[0] == s1.NextKeyID() {
		t.Fatalf("keys after a long outage %v", ks)
	}
	if tok := sign(t, s2, 0); tok.KeyID != s2.ActiveKeyID() {
		t.Fatal("not signing with the new key")
	}
}

// A key file written by a version without rotation is adopted: counted from
// its modification time but never as more than half-way through its life,
// so tokens in flight keep validating while it is replaced.
func TestSingleKeyFileMigrates(t *testing.T) {
	clk := newClock()
	dir := filepath.Join(t.TempDir(), "jwt")
	old := rotating(t, dir, clk, nil).ActiveKeyID()
	year := clk.Now().Add(-365 * 24 * time.Hour)
	if err := os.Chtimes(filepath.Join(dir, jwtsigner.KeyFileName), year, year); err != nil {
		t.Fatal(err)
	}
	s := rotating(t, dir, clk, nil)
	if s.ActiveKeyID() != old {
		t.Fatal("key file not adopted")
	}
	tok := sign(t, s, keyTTL/3+time.Minute)
	mustRotate(t, s)
	if s.NextKeyID() == "" || s.ActiveKeyID() != old {
		t.Fatal("an old key file should have its successor prepared at once, and stay active")
	}
	if _, err := os.Stat(filepath.Join(dir, jwtsigner.KeyFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("key file still present after the first rotation: %v", err)
	}
	clk.Add(keyTTL / 3)
	mustRotate(t, s)
	if s.ActiveKeyID() == old {
		t.Fatal("successor not activated")
	}
	if err := validateAt(tok.Token, s, clk.Now()); err != nil {
		t.Fatalf("token of the migrated key: %v", err)
	}
	clk.Add(keyTTL / 6)
	mustRotate(t, s)
	if slices.Contains(kids(s), old) {
		t.Fatal("migrated key not pruned at its expiry")
	}
}

// A configuration change of algorithm applies from the next key on.
func TestAlgorithmChangeAtRotation(t *testing.T) {
	clk := newClock()
	dir := filepath.Join(t.TempDir(), "jwt")
	rotating(t, dir, clk, nil)
	s, err := jwtsigner.New(jwtsigner.Config{TrustDomain: td, Dir: dir, KeyTTL: keyTTL, Clock: clk.Now, Algorithm: jwtsigner.RS256})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.JWTAuthorities()[s.ActiveKeyID()].(*rsa.PublicKey); ok {
		t.Fatal("persisted key replaced at start")
	}
	clk.Add(keyTTL / 2)
	mustRotate(t, s)
	if _, ok := s.JWTAuthorities()[s.NextKeyID()].(*rsa.PublicKey); !ok {
		t.Fatal("next key is not RSA")
	}
}

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
	writes := kv.writeCount()
	kv.holdReads(2)
	var wg sync.WaitGroup
	for _, s := range []*jwtsigner.Signer{a, b} {
		wg.Go(func() {
			if err := s.Rotate(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := kv.writeCount() - writes; n != 1 {
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
	var n int
	return swapIn(v.private, key, old, value, &n), nil
}

func (v *view) detach() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.kv.mu.Lock()
	defer v.kv.mu.Unlock()
	v.private = maps.Clone(v.kv.m)
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
	kv.set(func(k *memKV) { k.failing = true })
	clk.Add(keyTTL / 2)
	if err := s.Rotate(context.Background()); err == nil || !strings.Contains(err.Error(), "memkv: down") {
		t.Fatalf("Rotate with the store down: %v", err)
	}
	if s.NextKeyID() != "" || sign(t, s, 0).KeyID != k1 {
		t.Fatal("state changed while the store was down")
	}
	kv.set(func(k *memKV) { k.failing = false })
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
	kv.set(func(k *memKV) { k.failing = true })
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
	kv.holdReads(2)
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
