package cache_test

import (
	"encoding/base64"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/agent/cache"
)

func fakeToken(kid string) string {
	head := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"ES256","kid":"` + kid + `","typ":"JWT"}`))
	return head + ".e30.c2ln"
}

// Tokens signed by a tainted key are dropped, others kept; the key ID is
// read from the token's header.
func TestJWTStoreDropSignedBy(t *testing.T) {
	s := cache.NewJWTStore()
	now := time.Now()
	a, b := entry("a", 1, uid1), entry("b", 1, uid1)
	s.PutToken(a, []string{"x"}, &cache.JWTSVID{Token: fakeToken("k1"), ID: a.SPIFFEID, IssuedAt: now, ExpiresAt: now.Add(time.Hour)}, now)
	s.PutToken(b, []string{"x"}, &cache.JWTSVID{Token: fakeToken("k2"), ID: b.SPIFFEID, IssuedAt: now, ExpiresAt: now.Add(time.Hour)}, now)
	s.PutToken(b, []string{"y"}, &cache.JWTSVID{Token: "not.a.jwt", ID: b.SPIFFEID, IssuedAt: now, ExpiresAt: now.Add(time.Hour)}, now)
	if got := s.Token(a, []string{"x"}, now); got == nil || got.KeyID != "k1" {
		t.Fatalf("cached token %+v, want kid k1", got)
	}
	if n := s.DropSignedBy(nil); n != 0 {
		t.Fatalf("DropSignedBy(nil) dropped %d", n)
	}
	if n := s.DropSignedBy([]string{"k1"}); n != 1 {
		t.Fatalf("DropSignedBy(k1) dropped %d, want 1", n)
	}
	if s.Token(a, []string{"x"}, now) != nil {
		t.Fatal("a token of the tainted key is still served")
	}
	if s.Token(b, []string{"x"}, now) == nil || s.Token(b, []string{"y"}, now) == nil {
		t.Fatal("tokens of other keys (or without a readable kid) were dropped")
	}
}
