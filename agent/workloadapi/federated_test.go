package workloadapi_test

import (
	"context"
	"crypto/x509"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/hallmarkid/hallmark/agent/cache"
	"github.com/hallmarkid/hallmark/internal/x509util"
	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/ca"
	"github.com/hallmarkid/hallmark/server/jwtsigner"
)

var (
	partner = spiffeid.RequireTrustDomainFromString("partner.test")
	other   = spiffeid.RequireTrustDomainFromString("other.test")
)

// foreignRoots returns the bundle of a real CA for td.
func foreignRoots(tb testing.TB, td spiffeid.TrustDomain) []*x509.Certificate {
	tb.Helper()
	a, err := ca.New(ca.Config{TrustDomain: td, Dir: filepath.Join(tb.TempDir(), "ca")})
	if err != nil {
		tb.Fatal(err)
	}
	return a.Bundle()
}

func fedBundle(td spiffeid.TrustDomain, certs []*x509.Certificate, jwt *jwtbundle.Bundle) *cache.Bundle {
	return &cache.Bundle{TrustDomain: td, Certs: certs, DER: x509util.ConcatDER(certs), JWT: jwt}
}

func workloadEntry(id string, rev int64, sel registration.Selector, federatesWith ...spiffeid.TrustDomain) registration.Entry {
	return registration.Entry{ID: id, Revision: rev, SPIFFEID: spiffeid.RequireFromString("spiffe://example.org/" + id),
		ParentID: spiffeid.RequireFromString("spiffe://example.org/agent/x"), Selectors: []registration.Selector{sel},
		FederatesWith: federatesWith}
}

// The caller gets the federated bundles of its own entries only, as the
// stock client's X509Context shows, and a revocation or rotation is
// pushed to the open stream.
func TestFederatedBundlesInX509Context(t *testing.T) {
	f := newFixture(t)
	partnerRoots, otherRoots := foreignRoots(t, partner), foreignRoots(t, other)
	f.cache.SetFederatedBundles(true, []*cache.Bundle{fedBundle(partner, partnerRoots, nil), fedBundle(other, otherRoots, nil)})
	f.addEntry(t, workloadEntry("w", 1, me(), partner), time.Hour)
	f.addEntry(t, workloadEntry("theirs", 1, registration.Selector{Type: "unix", Value: "uid:4242"}, other), time.Hour)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	x509ctx, err := workloadapi.FetchX509Context(ctx, workloadapi.WithAddr(f.addr))
	if err != nil {
		t.Fatal(err)
	}
	pb, err := x509ctx.Bundles.GetX509BundleForTrustDomain(partner)
	if err != nil {
		t.Fatalf("no partner.test bundle in the X509Context: %v", err)
	}
	if !pb.HasX509Authority(partnerRoots[0]) {
		t.Fatal("partner.test bundle lacks its root")
	}
	if _, err := x509ctx.Bundles.GetX509BundleForTrustDomain(td); err != nil {
		t.Fatalf("own bundle missing: %v", err)
	}
	if x509ctx.Bundles.Has(other) {
		t.Fatal("the caller got other.test, which only another workload's entry federates with")
	}

	// FetchX509Bundles: own and partner.test, not other.test.
	set, err := workloadapi.FetchX509Bundles(ctx, workloadapi.WithAddr(f.addr))
	if err != nil {
		t.Fatal(err)
	}
	if !set.Has(td) || !set.Has(partner) || set.Has(other) || set.Len() != 2 {
		t.Fatalf("FetchX509Bundles gave %d bundles (own=%v partner=%v other=%v), want own and partner.test",
			set.Len(), set.Has(td), set.Has(partner), set.Has(other))
	}

	client, err := workloadapi.New(ctx, workloadapi.WithAddr(f.addr))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	updates := make(chan *workloadapi.X509Context, 8)
	go client.WatchX509Context(ctx, watcher(func(c *workloadapi.X509Context) { updates <- c }))
	next := func(what string) *workloadapi.X509Context {
		t.Helper()
		select {
		case c := <-updates:
			return c
		case <-ctx.Done():
			t.Fatalf("no update pushed for %s", what)
			return nil
		}
	}
	if c := next("the first response"); !c.Bundles.Has(partner) {
		t.Fatal("watch: partner.test missing")
	}
	// A change to a trust domain the caller does not federate with is not
	// pushed; a rotation of partner.test is.
	f.cache.SetFederatedBundles(false, []*cache.Bundle{fedBundle(other, foreignRoots(t, other), nil)})
	rotated := foreignRoots(t, partner)
	f.cache.SetFederatedBundles(false, []*cache.Bundle{fedBundle(partner, rotated, nil)})
	if c := next("the rotation"); !c.Bundles.Has(partner) || !must(c.Bundles.GetX509BundleForTrustDomain(partner)).HasX509Authority(rotated[0]) {
		t.Fatal("rotation of partner.test not pushed")
	}
	// Revocation: the empty bundle the server sends removes it.
	f.cache.SetFederatedBundles(false, []*cache.Bundle{{TrustDomain: partner}})
	if c := next("the revocation"); c.Bundles.Has(partner) {
		t.Fatal("revoked partner.test still served")
	}
	select {
	case c := <-updates:
		t.Fatalf("unexpected extra update with %d bundles", c.Bundles.Len())
	case <-time.After(200 * time.Millisecond):
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// FetchJWTBundles carries the federated JWT keys of the caller's entries,
// and ValidateJWTSVID accepts tokens of those trust domains only for such
// callers.
func TestFederatedJWTBundles(t *testing.T) {
	f := newJWTFixture(t)
	psigner, err := jwtsigner.New(jwtsigner.Config{TrustDomain: partner, Dir: filepath.Join(t.TempDir(), "jwt")})
	if err != nil {
		t.Fatal(err)
	}
	pjwt := jwtbundle.FromJWTAuthorities(partner, psigner.JWTAuthorities())
	f.cache.SetFederatedBundles(true, []*cache.Bundle{
		fedBundle(partner, foreignRoots(t, partner), pjwt),
		fedBundle(other, foreignRoots(t, other), nil), // X.509 only: no JWKS for it
	})
	ctx := ctx10(t)
	token, err := psigner.SignJWTSVID(ctx, jwtsigner.JWTSVIDParams{ID: spiffeid.RequireFromString("spiffe://partner.test/api"), Audience: []string{"me"}})
	if err != nil {
		t.Fatal(err)
	}
	client, err := workloadapi.New(ctx, workloadapi.WithAddr(f.addr))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	// Without federation the partner's token is not trusted.
	e := workloadEntry("w", 1, me())
	f.cache.UpdateEntries(false, []registration.Entry{e}, nil)
	if _, err := client.ValidateJWTSVID(ctx, token.Token, "me"); err == nil {
		t.Fatal("partner token accepted by a caller whose entries do not federate with partner.test")
	}
	set, err := client.FetchJWTBundles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if set.Has(partner) || !set.Has(td) {
		t.Fatalf("JWT bundles own=%v partner=%v, want only own", set.Has(td), set.Has(partner))
	}

	e.Revision, e.FederatesWith = 2, []spiffeid.TrustDomain{partner, other}
	f.cache.UpdateEntries(false, []registration.Entry{e}, nil)
	svid, err := client.ValidateJWTSVID(ctx, token.Token, "me")
	if err != nil {
		t.Fatalf("partner token refused for a federating caller: %v", err)
	}
	if svid.ID.String() != "spiffe://partner.test/api" {
		t.Fatalf("validated %s", svid.ID)
	}
	set, err = client.FetchJWTBundles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range set.Bundles() {
		names = append(names, b.TrustDomain().Name())
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"example.org", "partner.test"}) {
		t.Fatalf("JWT bundles %v, want example.org and partner.test (other.test has no JWT keys)", names)
	}
	if _, ok := must(set.GetJWTBundleForTrustDomain(partner)).FindJWTAuthority(token.KeyID); !ok {
		t.Fatal("partner JWT bundle lacks the signing key")
	}
}
