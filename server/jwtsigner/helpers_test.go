package jwtsigner_test

import (
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

	"github.com/hallmarkid/hallmark/server/authority/authoritytest"
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

// memKV is the in-memory KV store of the engine's tests.
type memKV = authoritytest.MemKV

func newMemKV() *memKV { return authoritytest.NewMemKV(errKVNotFound) }

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
