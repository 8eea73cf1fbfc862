package jwtsigner_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
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
