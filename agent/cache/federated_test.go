package cache_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"slices"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/agent/cache"
	"github.com/hallmarkid/hallmark/registration"
)

var (
	own     = spiffeid.RequireTrustDomainFromString("example.org")
	partner = spiffeid.RequireTrustDomainFromString("partner.test")
	other   = spiffeid.RequireTrustDomainFromString("other.test")
)

// fb returns a federated bundle for td whose "DER" is der (the cache
// compares bytes, never parses them) and, with kid, one JWT key.
func fb(td spiffeid.TrustDomain, der string, kid string) *cache.Bundle {
	b := &cache.Bundle{TrustDomain: td, DER: []byte(der)}
	if der != "" {
		b.Certs = []*x509.Certificate{{Raw: []byte(der)}}
	}
	if kid != "" {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		b.JWT = jwtbundle.New(td)
		_ = b.JWT.AddJWTAuthority(kid, k.Public())
	}
	return b
}

func held(c *cache.Cache) []string {
	var out []string
	for _, b := range c.FederatedBundles() {
		out = append(out, b.TrustDomain.Name()+"="+string(b.DER))
	}
	return out
}

func TestSetFederatedBundles(t *testing.T) {
	for _, tt := range []struct {
		name       string
		start      []*cache.Bundle
		complete   bool
		apply      []*cache.Bundle
		want       []string
		wantNotify bool
	}{
		{name: "complete set replaces", start: []*cache.Bundle{fb(partner, "p1", "")}, complete: true,
			apply: []*cache.Bundle{fb(other, "o1", "")}, want: []string{"other.test=o1"}, wantNotify: true},
		{name: "empty complete set drops all", start: []*cache.Bundle{fb(partner, "p1", "")}, complete: true,
			want: nil, wantNotify: true},
		{name: "change keeps the others", start: []*cache.Bundle{fb(partner, "p1", ""), fb(other, "o1", "")},
			apply: []*cache.Bundle{fb(partner, "p2", "")}, want: []string{"other.test=o1", "partner.test=p2"}, wantNotify: true},
		{name: "empty bundle removes (revocation)", start: []*cache.Bundle{fb(partner, "p1", ""), fb(other, "o1", "")},
			apply: []*cache.Bundle{fb(partner, "", "")}, want: []string{"other.test=o1"}, wantNotify: true},
		{name: "JWT-only bundle is kept", apply: []*cache.Bundle{fb(partner, "", "k")}, want: []string{"partner.test="}, wantNotify: true},
		{name: "same authorities: no notification", start: []*cache.Bundle{fb(partner, "p1", "")},
			apply: []*cache.Bundle{fb(partner, "p1", "")}, want: []string{"partner.test=p1"}},
		{name: "same complete set: no notification", start: []*cache.Bundle{fb(partner, "p1", "")}, complete: true,
			apply: []*cache.Bundle{fb(partner, "p1", "")}, want: []string{"partner.test=p1"}},
		{name: "removing what is absent: no notification", start: []*cache.Bundle{fb(partner, "p1", "")},
			apply: []*cache.Bundle{fb(other, "", "")}, want: []string{"partner.test=p1"}},
		{name: "own trust domain is never federated", complete: true,
			apply: []*cache.Bundle{fb(own, "evil", ""), fb(partner, "p1", "")}, want: []string{"partner.test=p1"}, wantNotify: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := cache.New()
			c.SetBundle(&cache.Bundle{TrustDomain: own, DER: []byte("own")})
			c.SetFederatedBundles(true, tt.start)
			changed, _ := c.Changed()
			c.SetFederatedBundles(tt.complete, tt.apply)
			if got := held(c); !slices.Equal(got, tt.want) {
				t.Errorf("held %v, want %v", got, tt.want)
			}
			select {
			case <-changed:
				if !tt.wantNotify {
					t.Error("watchers told of a change that changed nothing")
				}
			default:
				if tt.wantNotify {
					t.Error("watchers not told")
				}
			}
			if b := c.Bundle(); string(b.DER) != "own" {
				t.Error("the own bundle changed")
			}
		})
	}
}

func TestFederatedFor(t *testing.T) {
	c := cache.New()
	c.SetFederatedBundles(true, []*cache.Bundle{fb(partner, "p", ""), fb(other, "o", "")})
	unknown := spiffeid.RequireTrustDomainFromString("unknown.test")
	e1, e2, e3 := entry("a", 1, uid1), entry("b", 1, uid1), entry("c", 1, uid1)
	e1.FederatesWith = []spiffeid.TrustDomain{partner, unknown}
	e2.FederatesWith = []spiffeid.TrustDomain{other, partner}
	for _, tt := range []struct {
		name    string
		entries []registration.Entry
		want    []string
	}{
		{name: "none federate", entries: []registration.Entry{e3}},
		{name: "unknown trust domains are left out", entries: []registration.Entry{e1}, want: []string{"partner.test"}},
		{name: "union, each once, by name", entries: []registration.Entry{e1, e2, e3}, want: []string{"other.test", "partner.test"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, b := range c.FederatedFor(tt.entries) {
				got = append(got, b.TrustDomain.Name())
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestEntryIDs(t *testing.T) {
	c := cache.New()
	c.UpdateEntries(true, []registration.Entry{entry("a", 1, uid1), entry("b", 2, uid2)}, nil)
	c.UpdateEntries(false, nil, []string{"a"})
	if got := c.EntryIDs(); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("EntryIDs = %v, want [b]", got)
	}
}
