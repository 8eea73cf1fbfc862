package ca_test

import (
	"context"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/hallmarkid/hallmark/server/ca"
)

// statuses returns "id:status[:tainted]" for every authority.
func statuses(c *ca.CA) map[string]string {
	out := map[string]string{}
	for _, a := range c.Authorities() {
		s := a.Status
		if a.Tainted {
			s += ":tainted"
		}
		out[a.ID] = s
	}
	return out
}

func inBundle(c *ca.CA, cert *x509.Certificate) bool {
	return slices.ContainsFunc(c.Bundle(), cert.Equal)
}

func signWith(t *testing.T, c *ca.CA) []*x509.Certificate {
	t.Helper()
	chain, err := c.SignX509SVID(t.Context(), ca.X509SVIDParams{ID: wlID, PublicKey: ecKey(t, elliptic.P256()).Public(), TTL: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return chain
}

func verifies(c *ca.CA, chain []*x509.Certificate, now time.Time) error {
	_, _, err := x509svid.Verify(chain, x509bundle.FromX509Authorities(td, c.Bundle()), x509svid.WithTime(now))
	return err
}

// TestLocalAuthorityLifecycle walks one authority through every operator
// verb: prepare publishes it, activate makes it sign while what the old one
// signed still verifies, taint flags the old one (a bundle change), revoke
// removes it so what it signed stops verifying — and all of it survives a
// restart.
func TestLocalAuthorityLifecycle(t *testing.T) {
	c, clk, dir := newCA(t, "")
	first := c.Authorities()[0]
	if first.Status != ca.StatusActive || first.Tainted || len(c.Authorities()) != 1 {
		t.Fatalf("fresh CA: %+v", c.Authorities())
	}
	oldSVID := signWith(t, c)

	clk.Set(t0.Add(time.Hour))
	seq, ch := c.BundleSequence(), c.BundleChanged()
	prep, err := c.PrepareAuthority(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if prep.Status != ca.StatusPrepared || !prep.PublishedAt.Equal(clk.Now()) || !prep.ActivatedAt.IsZero() {
		t.Fatalf("prepared: %+v", prep)
	}
	if !inBundle(c, prep.Certificate) || !closed(ch) || c.BundleSequence() != seq+1 {
		t.Fatal("prepared authority not published as a bundle change")
	}
	if !c.Certificate().Equal(first.Certificate) {
		t.Fatal("prepare changed the signing authority")
	}

	clk.Set(t0.Add(2 * time.Hour))
	act, err := c.ActivateAuthority(t.Context(), prep.ID)
	if err != nil {
		t.Fatal(err)
	}
	if act.Status != ca.StatusActive || !act.ActivatedAt.Equal(clk.Now()) || !c.Certificate().Equal(prep.Certificate) {
		t.Fatalf("activated: %+v", act)
	}
	want := map[string]string{prep.ID: "active", first.ID: "old"}
	if got := statuses(c); !mapsEqual(got, want) {
		t.Fatalf("after activate %v, want %v", got, want)
	}
	newSVID := signWith(t, c)
	if !slices.Equal(newSVID[0].AuthorityKeyId, prep.Certificate.SubjectKeyId) {
		t.Fatal("new SVIDs are not signed by the activated authority")
	}
	for _, chain := range [][]*x509.Certificate{oldSVID, newSVID} {
		if err := verifies(c, chain, clk.Now()); err != nil {
			t.Fatalf("after activate: %v", err)
		}
	}

	seq, ch = c.BundleSequence(), c.BundleChanged()
	bundleBefore := bundleIDs(c.Bundle())
	if _, err := c.TaintAuthority(t.Context(), first.ID); err != nil {
		t.Fatal(err)
	}
	if !closed(ch) || c.BundleSequence() != seq+1 {
		t.Fatal("taint is not a bundle change: agents would not learn of it")
	}
	if !slices.Equal(bundleIDs(c.Bundle()), bundleBefore) {
		t.Fatal("taint changed the bundle's certificates")
	}
	if tc := c.TaintedAuthorities(); len(tc) != 1 || !tc[0].Equal(first.Certificate) {
		t.Fatalf("TaintedAuthorities = %d certs", len(tc))
	}
	if err := verifies(c, oldSVID, clk.Now()); err != nil {
		t.Fatalf("a tainted authority's SVID must verify until revoked: %v", err)
	}

	seq, ch = c.BundleSequence(), c.BundleChanged()
	if _, err := c.RevokeAuthority(t.Context(), first.ID); err != nil {
		t.Fatal(err)
	}
	if inBundle(c, first.Certificate) || !closed(ch) || c.BundleSequence() != seq+1 {
		t.Fatal("revoked authority still in the bundle, or no bundle change")
	}
	if err := verifies(c, oldSVID, clk.Now()); err == nil {
		t.Fatal("an SVID of the revoked authority still verifies")
	}
	if err := verifies(c, newSVID, clk.Now()); err != nil {
		t.Fatal(err)
	}
	if got := statuses(c); !mapsEqual(got, map[string]string{prep.ID: "active"}) {
		t.Fatalf("after revoke %v", got)
	}

	// A restart keeps the roles, and the revocation.
	r, err := ca.New(ca.Config{TrustDomain: td, Dir: dir, Clock: clk.Now, TTL: 30 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !mapsEqual(statuses(r), statuses(c)) || r.BundleSequence() != c.BundleSequence() {
		t.Fatalf("after restart %v seq %d, want %v seq %d", statuses(r), r.BundleSequence(), statuses(c), c.BundleSequence())
	}
	if fileMode(t, filepath.Join(dir, ca.StateFileName)) != 0o600 {
		t.Fatal("state file mode")
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestLocalAuthorityRefusals: every action that makes no sense is refused
// with ErrUnknownAuthority or ErrRefused and a reason, and changes nothing.
func TestLocalAuthorityRefusals(t *testing.T) {
	c, clk, _ := newCA(t, "")
	active := c.Authorities()[0].ID
	ctx := t.Context()
	if _, err := c.ActivateAuthority(ctx, "0123456789abcdef"); !errors.Is(err, ca.ErrUnknownAuthority) ||
		!strings.Contains(err.Error(), "run prepare first") {
		t.Fatalf("activate without a prepared authority: %v", err)
	}
	prep, err := c.PrepareAuthority(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// An old, untainted authority and a tainted one.
	clk.Set(t0.Add(time.Hour))
	if _, err := c.ActivateAuthority(ctx, prep.ID); err != nil {
		t.Fatal(err)
	}
	old := active
	active = prep.ID
	prep2, err := c.PrepareAuthority(ctx)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		do      func(context.Context, string) (ca.AuthorityInfo, error)
		id      string
		wantIs  error
		wantErr string
	}{
		{name: "activate unknown", do: c.ActivateAuthority, id: "0123456789abcdef", wantIs: ca.ErrUnknownAuthority, wantErr: "no such authority"},
		{name: "activate empty ID", do: c.ActivateAuthority, id: "", wantIs: ca.ErrUnknownAuthority, wantErr: "ID is required"},
		{name: "activate the active", do: c.ActivateAuthority, id: active, wantIs: ca.ErrRefused, wantErr: "already the active"},
		{name: "activate an old one", do: c.ActivateAuthority, id: old, wantIs: ca.ErrRefused, wantErr: "only the prepared one"},
		{name: "taint unknown", do: c.TaintAuthority, id: "0123456789abcdef", wantIs: ca.ErrUnknownAuthority, wantErr: "no such authority"},
		{name: "taint the active", do: c.TaintAuthority, id: active, wantIs: ca.ErrRefused, wantErr: "is the active authority"},
		{name: "taint the prepared", do: c.TaintAuthority, id: prep2.ID, wantIs: ca.ErrRefused, wantErr: "prepared and has signed nothing"},
		{name: "revoke unknown", do: c.RevokeAuthority, id: "0123456789abcdef", wantIs: ca.ErrUnknownAuthority, wantErr: "no such authority"},
		{name: "revoke the active", do: c.RevokeAuthority, id: active, wantIs: ca.ErrRefused, wantErr: "is the active authority"},
		{name: "revoke the prepared", do: c.RevokeAuthority, id: prep2.ID, wantIs: ca.ErrRefused, wantErr: "prepared, not tainted"},
		{name: "revoke an untainted old one", do: c.RevokeAuthority, id: old, wantIs: ca.ErrRefused, wantErr: "taint it first"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, seq := statuses(c), c.BundleSequence()
			_, err := tt.do(ctx, tt.id)
			if !errors.Is(err, tt.wantIs) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %v containing %q", err, tt.wantIs, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "ca: ") {
				t.Fatalf("error %q lacks the package prefix", err)
			}
			if !mapsEqual(statuses(c), before) || c.BundleSequence() != seq {
				t.Fatal("a refused action changed the CA")
			}
		})
	}

	if _, err := c.TaintAuthority(ctx, old); err != nil {
		t.Fatal(err)
	}
	if _, err := c.TaintAuthority(ctx, old); !errors.Is(err, ca.ErrRefused) || !strings.Contains(err.Error(), "already tainted") {
		t.Fatalf("taint twice: %v", err)
	}
	if _, err := c.RevokeAuthority(ctx, old); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RevokeAuthority(ctx, old); !errors.Is(err, ca.ErrRefused) || !strings.Contains(err.Error(), "already revoked") {
		t.Fatalf("revoke twice: %v", err)
	}
	if _, err := c.ActivateAuthority(ctx, old); !errors.Is(err, ca.ErrUnknownAuthority) {
		t.Fatalf("activate a revoked one: %v", err)
	}
}

// TestLocalAuthorityPrepareReplaces: preparing again replaces a prepared
// authority that never signed, and the replaced one leaves the bundle.
func TestLocalAuthorityPrepareReplaces(t *testing.T) {
	c, _, _ := newCA(t, "")
	a, err := c.PrepareAuthority(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.PrepareAuthority(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if a.ID == b.ID || inBundle(c, a.Certificate) || !inBundle(c, b.Certificate) || len(c.Authorities()) != 2 {
		t.Fatalf("second prepare: %v", statuses(c))
	}
}

// TestLocalAuthorityScheduleAfterActivate: after an operator's activation
// the schedule restarts from the new active authority; the tainted old one
// is pruned when it expires.
func TestLocalAuthorityScheduleAfterActivate(t *testing.T) {
	clk := &fixedClock{now: t0}
	c, err := ca.New(ca.Config{TrustDomain: td, Dir: filepath.Join(t.TempDir(), "ca"), Clock: clk.Now, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	first := c.Authorities()[0]
	clk.Set(t0.Add(10 * time.Minute))
	p, err := c.PrepareAuthority(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ActivateAuthority(t.Context(), p.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.TaintAuthority(t.Context(), first.ID); err != nil {
		t.Fatal(err)
	}
	// The scheduled rotation does nothing until half the new lifetime.
	clk.Set(t0.Add(35 * time.Minute))
	if err := c.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(c.Authorities()) != 2 {
		t.Fatalf("rotation acted early: %v", statuses(c))
	}
	// The first expires (t0+1h) and is pruned, taint and all.
	clk.Set(t0.Add(61 * time.Minute))
	if err := c.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, ok := statuses(c)[first.ID]; ok || len(c.TaintedAuthorities()) != 0 {
		t.Fatalf("expired tainted authority not pruned: %v", statuses(c))
	}
}

// TestLocalAuthorityShared: with two servers on one KV store, each action
// on one is what the other serves after its next poll, and a server that
// signed with a revoked authority does not merge it back.
func TestLocalAuthorityShared(t *testing.T) {
	kv := newMemKV()
	clk := &fixedClock{now: t0}
	a := sharedCA(t, kv, clk)
	bDir := filepath.Join(t.TempDir(), "ca")
	b, err := ca.New(ca.Config{TrustDomain: td, Dir: bDir, Clock: clk.Now, TTL: time.Hour, Shared: kv, SharedNotFound: errKVNotFound})
	if err != nil {
		t.Fatal(err)
	}
	agree(t, "start", a, b)
	first := a.Authorities()[0].ID
	signWith(t, b) // b signed with the first authority

	p, err := a.PrepareAuthority(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	rotateAll(t, b)
	agree(t, "after prepare", a, b)
	// The action applies to the shared state: b activates what a prepared.
	if _, err := b.ActivateAuthority(t.Context(), p.ID); err != nil {
		t.Fatal(err)
	}
	rotateAll(t, a)
	agree(t, "after activate", a, b)
	if !a.Certificate().Equal(p.Certificate) {
		t.Fatal("a does not sign with the activated authority")
	}
	if _, err := a.TaintAuthority(t.Context(), first); err != nil {
		t.Fatal(err)
	}
	rotateAll(t, b)
	if statuses(b)[first] != "old:tainted" {
		t.Fatalf("b did not adopt the taint: %v", statuses(b))
	}
	// A copy of b's directory from before the revocation: its local state
	// holds the authority, which signed.
	staleDir := filepath.Join(t.TempDir(), "stale")
	if err := os.Mkdir(staleDir, 0o700); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(bDir, ca.StateFileName))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(staleDir, ca.StateFileName), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := a.RevokeAuthority(t.Context(), first); err != nil {
		t.Fatal(err)
	}
	rotateAll(t, b, a)
	agree(t, "after revoke", a, b)
	for _, c := range []*ca.CA{a, b} {
		if _, ok := statuses(c)[first]; ok {
			t.Fatalf("revoked authority merged back: %v", statuses(c))
		}
	}
	crossVerify(t, clk.Now(), a, b)
	// A server restarting from the stale copy does not resurrect it either.
	c, err := ca.New(ca.Config{TrustDomain: td, Dir: staleDir, Clock: clk.Now, TTL: time.Hour, Shared: kv, SharedNotFound: errKVNotFound})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := statuses(c)[first]; ok {
		t.Fatalf("restart from a stale copy resurrected the revoked authority: %v", statuses(c))
	}
	rotateAll(t, a)
	agree(t, "after the stale restart", a, c)
}

// TestLocalAuthorityStateDecode: a state document that lists an authority
// as both held and revoked, or a tainted active one, is refused.
func TestLocalAuthorityStateDecode(t *testing.T) {
	c, clk, dir := newCA(t, "")
	first := c.Authorities()[0].ID
	p, err := c.PrepareAuthority(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ActivateAuthority(t.Context(), p.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.TaintAuthority(t.Context(), first); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(filepath.Join(dir, ca.StateFileName))
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.DecodeState(good, td); err != nil {
		t.Fatalf("good state: %v", err)
	}
	_ = clk
	tests := []struct {
		name    string
		edit    func(string) string
		wantErr string
	}{
		{name: "tainted active", edit: func(s string) string {
			return strings.Replace(s, `"status": "active",`, `"status": "active", "tainted": true,`, 1)
		}, wantErr: "only old authorities"},
		{name: "held and revoked", edit: func(s string) string {
			return strings.Replace(s, `"authorities": [`, `"revoked": [{"id": "`+first+`", "not_after": "2040-01-01T00:00:00Z"}], "authorities": [`, 1)
		}, wantErr: "both held and revoked"},
		{name: "malformed revoked ID", edit: func(s string) string {
			return strings.Replace(s, `"authorities": [`, `"revoked": [{"id": "../x", "not_after": "2040-01-01T00:00:00Z"}], "authorities": [`, 1)
		}, wantErr: "malformed authority ID"},
		{name: "revoked twice", edit: func(s string) string {
			r := `{"id": "00000000000000aa", "not_after": "2040-01-01T00:00:00Z"}`
			return strings.Replace(s, `"authorities": [`, `"revoked": [`+r+`,`+r+`], "authorities": [`, 1)
		}, wantErr: "appears twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := tt.edit(string(good))
			if doc == string(good) {
				t.Fatal("edit did not apply")
			}
			if err := ca.DecodeState([]byte(doc), td); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
