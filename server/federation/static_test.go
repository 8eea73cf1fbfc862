package federation_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"

	"github.com/hallmarkid/hallmark/server/federation"
)

// An operator's static bundle for a trust domain without a relationship is
// served with the others, survives a restart, never leaks into a later
// relationship for the same trust domain once deleted, and is refused for
// our own trust domain.
func TestStaticBundles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	static, configured := newCA(t, "static.test"), newCA(t, "configured.test")
	store := openStore(t)
	cfg := federation.FetcherConfig{TrustDomain: td("hub.test"), Store: store,
		Relationships: []federation.Relationship{{TrustDomain: configured.td, URL: "https://127.0.0.1:1",
			Profile: federation.ProfileHTTPSSPIFFE, EndpointID: id("spiffe://configured.test/hallmark/server"),
			TrustBundle: configured.spiffeBundle(1)}}}
	f, err := federation.NewFetcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	changed := f.Changed()
	if err := f.SetBundle(ctx, static.spiffeBundle(7)); err != nil {
		t.Fatal(err)
	}
	assertClosed(t, changed, "after a static bundle was set")
	if !hasAuthority(f.Bundles()[static.td], static.cert) {
		t.Fatal("static bundle not in Bundles")
	}
	if _, err := bundleSet(f).GetX509BundleForTrustDomain(static.td); err != nil {
		t.Fatal(err)
	}
	st := f.Status()
	if len(st) != 2 || st[0].TrustDomain != configured.td || st[0].Static || !st[1].Static || st[1].TrustDomain != static.td ||
		st[1].Sequence != 7 || st[1].X509Authorities != 1 || st[1].LastSuccess.IsZero() {
		t.Fatalf("status: %+v", st)
	}
	if err := f.Refresh(ctx, static.td); err == nil || !strings.Contains(err.Error(), "no endpoint") {
		t.Fatalf("refresh of a static bundle: %v", err)
	}

	// A restart keeps it.
	f2, err := federation.NewFetcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !hasAuthority(f2.Bundles()[static.td], static.cert) {
		t.Fatal("static bundle lost across restart")
	}

	// Deleted: gone, gone after a restart, and a relationship configured
	// later for that trust domain starts from its bootstrap bundle.
	changed = f2.Changed()
	if err := f2.DeleteBundle(ctx, static.td); err != nil {
		t.Fatal(err)
	}
	assertClosed(t, changed, "after a static bundle was deleted")
	if _, ok := f2.Bundles()[static.td]; ok {
		t.Fatal("deleted static bundle still served")
	}
	if err := f2.DeleteBundle(ctx, static.td); !errors.Is(err, federation.ErrUnknownTrustDomain) {
		t.Fatalf("second delete: %v", err)
	}
	if _, ok := mustFetcher(t, cfg).Bundles()[static.td]; ok {
		t.Fatal("deleted static bundle back after a restart")
	}
	other := newCA(t, "static.test")
	cfg.Relationships = append(cfg.Relationships, federation.Relationship{TrustDomain: static.td, URL: "https://127.0.0.1:1",
		Profile: federation.ProfileHTTPSSPIFFE, EndpointID: id("spiffe://static.test/hallmark/server"), TrustBundle: other.spiffeBundle(1)})
	if b := mustFetcher(t, cfg).Bundles()[static.td]; !hasAuthority(b, other.cert) || hasAuthority(b, static.cert) {
		t.Fatal("a new relationship did not start from its own bootstrap bundle")
	}
}

func TestStaticBundleErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	configured, liar := newCA(t, "configured.test"), newCA(t, "liar.test", "spiffe://victim.test")
	f := mustFetcher(t, federation.FetcherConfig{TrustDomain: td("hub.test"), Store: openStore(t),
		Relationships: []federation.Relationship{{TrustDomain: configured.td, URL: "https://127.0.0.1:1",
			Profile: federation.ProfileHTTPSSPIFFE, EndpointID: id("spiffe://configured.test/hallmark/server"),
			TrustBundle: configured.spiffeBundle(1)}}})
	tests := []struct {
		name    string
		call    func() error
		wantErr string
	}{
		{name: "set own trust domain", wantErr: "our own trust domain",
			call: func() error { return f.SetBundle(ctx, newCA(t, "hub.test").spiffeBundle(1)) }},
		{name: "set authority of another trust domain", wantErr: `names "spiffe://victim.test"`,
			call: func() error { return f.SetBundle(ctx, liar.spiffeBundle(1)) }},
		{name: "delete configured", wantErr: "configured with federates_with",
			call: func() error { return f.DeleteBundle(ctx, configured.td) }},
		{name: "delete unknown", wantErr: "no federates_with relationship or static bundle",
			call: func() error { return f.DeleteBundle(ctx, td("unknown.test")) }},
		{name: "refresh unknown", wantErr: "no federates_with relationship or static bundle",
			call: func() error { return f.Refresh(ctx, td("unknown.test")) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
	if len(f.Bundles()) != 1 {
		t.Fatalf("a refused call changed the bundles: %v", f.Bundles())
	}
	// An empty static bundle is allowed: it shows as revoked.
	if err := f.SetBundle(ctx, spiffebundle.New(td("empty.test"))); err != nil {
		t.Fatal(err)
	}
	if st := f.Status(); !st[len(st)-1].Revoked {
		t.Fatalf("empty static bundle not revoked: %+v", st)
	}
}

func mustFetcher(t testing.TB, cfg federation.FetcherConfig) *federation.Fetcher {
	t.Helper()
	f, err := federation.NewFetcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// Two fetchers on one store (two HA servers on one database): a static
// bundle set, replaced or deleted on one reaches the other at its next
// ReloadStatic, which signals Changed only when something changed.
func TestStaticBundlesReloadAcrossServers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	static := newCA(t, "static.test")
	store := openStore(t)
	cfg := federation.FetcherConfig{TrustDomain: td("hub.test"), Store: store}
	a, err := federation.NewFetcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := federation.NewFetcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.ReloadStatic(ctx); err != nil {
		t.Fatal(err)
	}
	changed := b.Changed()
	if err := b.ReloadStatic(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
		t.Fatal("a reload that found nothing new signalled a change")
	default:
	}

	if err := a.SetBundle(ctx, static.spiffeBundle(1)); err != nil {
		t.Fatal(err)
	}
	if err := b.ReloadStatic(ctx); err != nil {
		t.Fatal(err)
	}
	assertClosed(t, changed, "after a static bundle set on the other server")
	if !hasAuthority(b.Bundles()[static.td], static.cert) {
		t.Fatal("static bundle set on A is not served by B after a reload")
	}

	// Revoked (empty) on A: B serves the empty bundle.
	changed = b.Changed()
	empty := spiffebundle.New(static.td)
	empty.SetSequenceNumber(2)
	if err := a.SetBundle(ctx, empty); err != nil {
		t.Fatal(err)
	}
	if err := b.ReloadStatic(ctx); err != nil {
		t.Fatal(err)
	}
	assertClosed(t, changed, "after a revocation on the other server")
	if got := b.Bundles()[static.td]; got == nil || !got.Empty() {
		t.Fatalf("after revocation on A, B serves %v, want an empty bundle", got)
	}

	// Deleted on A: gone from B.
	changed = b.Changed()
	if err := a.DeleteBundle(ctx, static.td); err != nil {
		t.Fatal(err)
	}
	if err := b.ReloadStatic(ctx); err != nil {
		t.Fatal(err)
	}
	assertClosed(t, changed, "after a delete on the other server")
	if _, ok := b.Bundles()[static.td]; ok {
		t.Fatal("static bundle deleted on A is still served by B")
	}
}
