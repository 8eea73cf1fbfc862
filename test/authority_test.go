package test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/protobuf/encoding/protojson"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/test/testenv"
)

// localAuthority runs `hallmark-server localauthority <kind> <verb> ...`
// against srv and returns its output and error.
func localAuthority(env *testenv.Env, srv *testenv.Server, kind, verb string, args ...string) (string, error) {
	full := append([]string{"localauthority", kind, verb, "-socketPath", srv.SocketPath}, args...)
	return env.CLI("hallmark-server", full...)
}

func mustLocalAuthority(t *testing.T, env *testenv.Env, srv *testenv.Server, kind, verb string, args ...string) string {
	t.Helper()
	out, err := localAuthority(env, srv, kind, verb, args...)
	if err != nil {
		t.Fatalf("localauthority %s %s %v: %v\n%s", kind, verb, args, err, out)
	}
	return out
}

// localAuthorities returns `localauthority <kind> show -output json`, by status.
func localAuthorities(t *testing.T, env *testenv.Env, srv *testenv.Server, kind string) map[string][]*apiv1.LocalAuthority {
	t.Helper()
	out := mustLocalAuthority(t, env, srv, kind, "show", "-output", "json")
	// SPIRE's active/prepared/old, plus Hallmark's full list.
	var resp apiv1.ListLocalAuthoritiesResponse
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("show -output json: %v\n%s", err, out)
	}
	by := map[string][]*apiv1.LocalAuthority{}
	for _, a := range resp.GetAuthorities() {
		by[a.GetStatus()] = append(by[a.GetStatus()], a)
	}
	return by
}

// refused runs an action that must fail and checks its message.
func refused(t *testing.T, env *testenv.Env, srv *testenv.Server, want, kind, verb string, args ...string) {
	t.Helper()
	out, err := localAuthority(env, srv, kind, verb, args...)
	if err == nil || !strings.Contains(out, want) {
		t.Fatalf("localauthority %s %s %v: err %v, output %q; want a refusal containing %q", kind, verb, args, err, out, want)
	}
}

// withinValidity verifies at a moment the SVID's leaf is valid, so a
// verification fails for its chain, never for its age.
func withinValidity(s *x509svid.SVID) x509svid.VerifyOption {
	return x509svid.WithTime(s.Certificates[0].NotAfter.Add(-time.Second))
}

func bundleHas(b []*x509.Certificate, skid string) bool {
	return slices.ContainsFunc(b, func(c *x509.Certificate) bool { return hex.EncodeToString(c.SubjectKeyId) == skid })
}

// TestLocalAuthorityX509EndToEnd drives the X.509 CA of a real server with
// the CLI the way an operator answering a key leak would: prepare (the
// next authority reaches the workload's bundle), activate (new workload
// SVIDs chain to it, the old SVID still validates), taint and revoke the
// old authority (it leaves `bundle show` and the workload's bundle, and
// the old SVID stops validating). Refusals and the audit log are checked
// on the way.
func TestLocalAuthorityX509EndToEnd(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer(testenv.WithServerHCL(`default_x509_svid_ttl = "6s"
  agent_svid_ttl = "8s"`))
	ag := env.StartAgent(srv, srv.Token())
	const id = "spiffe://example.org/workload/authority"
	srv.CreateEntry(id, ag.ID(), "-selector", uidSelector())
	before := waitForSVID(t, ag.Addr(), id)
	oldSVID := before.DefaultSVID()

	as := localAuthorities(t, env, srv, "x509")
	if len(as["active"]) != 1 || len(as["prepared"]) != 0 || len(as["old"]) != 0 {
		t.Fatalf("fresh server: %v", as)
	}
	first := as["active"][0]
	if hex.EncodeToString(oldSVID.Certificates[0].AuthorityKeyId) != first.GetSubjectKeyId() {
		t.Fatal("the workload's SVID is not signed by the listed active authority")
	}
	refused(t, env, srv, "run prepare first", "x509", "activate", "-authorityID", "0123456789abcdef")
	refused(t, env, srv, "-authorityID is required", "x509", "taint")
	refused(t, env, srv, "is the active authority", "x509", "revoke", "-authorityID", first.GetAuthorityId())

	out := mustLocalAuthority(t, env, srv, "x509", "prepare")
	if !strings.Contains(out, "Prepared X.509 authority") {
		t.Fatalf("prepare output:\n%s", out)
	}
	as = localAuthorities(t, env, srv, "x509")
	if len(as["prepared"]) != 1 {
		t.Fatalf("show after prepare: %v", as)
	}
	next := as["prepared"][0]
	show := mustLocalAuthority(t, env, srv, "x509", "show")
	for _, want := range []string{"Active X.509 authority:", "Prepared X.509 authority:", next.GetAuthorityId(), "No old X.509 authority found"} {
		if !strings.Contains(show, want) {
			t.Fatalf("show lacks %q:\n%s", want, show)
		}
	}
	td := spiffeid.RequireTrustDomainFromString(testenv.TrustDomain)
	testenv.WaitFor(t, 10*time.Second, "the prepared authority in the workload's bundle", func() bool {
		b, err := fetch(t, ag.Addr()).Bundles.GetX509BundleForTrustDomain(td)
		return err == nil && bundleHas(b.X509Authorities(), next.GetSubjectKeyId())
	})
	if got := hex.EncodeToString(fetch(t, ag.Addr()).DefaultSVID().Certificates[0].AuthorityKeyId); got != first.GetSubjectKeyId() {
		t.Fatal("the prepared authority signed before activation")
	}

	activated := time.Now()
	mustLocalAuthority(t, env, srv, "x509", "activate", "-authorityID", next.GetAuthorityId())
	var cur *workloadapi.X509Context
	testenv.WaitFor(t, 10*time.Second, "a workload SVID signed by the activated authority", func() bool {
		cur = fetch(t, ag.Addr())
		return hex.EncodeToString(cur.DefaultSVID().Certificates[0].AuthorityKeyId) == next.GetSubjectKeyId()
	})
	b, err := cur.Bundles.GetX509BundleForTrustDomain(td)
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*x509svid.SVID{"old": oldSVID, "new": cur.DefaultSVID()} {
		// Checked at a moment inside the SVID's own validity: the short
		// TTL may have run out by now on a slow machine (or under the race
		// detector), and what is asked here is whether its chain holds.
		if _, _, err := x509svid.Verify(s.Certificates, b, withinValidity(s)); err != nil {
			t.Fatalf("the %s SVID does not validate after activation: %v", name, err)
		}
	}
	as = localAuthorities(t, env, srv, "x509")
	if len(as["active"]) != 1 || as["active"][0].GetAuthorityId() != next.GetAuthorityId() ||
		len(as["old"]) != 1 || as["old"][0].GetAuthorityId() != first.GetAuthorityId() {
		t.Fatalf("show after activate: %v", as)
	}
	refused(t, env, srv, "taint it first", "x509", "revoke", "-authorityID", first.GetAuthorityId())

	// The server's own TLS certificate is re-minted under the new
	// authority at the next handshake, not at its half-life.
	if aki := serverCertAKI(t, srv.Address); aki != next.GetSubjectKeyId() {
		t.Fatalf("server certificate issued by %s after the activation, want the activated %s", aki, next.GetSubjectKeyId())
	}
	// Before revoking, let the agent's own SVID (renewed at half its 8 s)
	// be re-minted under the new authority.
	testenv.WaitFor(t, 15*time.Second, "the agent's SVID re-minted after the activation", func() bool {
		resp, err := srv.Admin().ListAgents(context.Background(), &apiv1.ListAgentsRequest{})
		return err == nil && len(resp.GetAgents()) == 1 && resp.GetAgents()[0].GetX509SvidExpiresAt() >= activated.Unix()+9
	})

	mustLocalAuthority(t, env, srv, "x509", "taint", "-authorityID", first.GetAuthorityId())
	as = localAuthorities(t, env, srv, "x509")
	if len(as["old"]) != 1 || !as["old"][0].GetTainted() {
		t.Fatalf("show after taint: %v", as)
	}
	refused(t, env, srv, "already tainted", "x509", "taint", "-authorityID", first.GetAuthorityId())
	mustLocalAuthority(t, env, srv, "x509", "revoke", "-authorityID", first.GetAuthorityId())
	if bundle := srv.MustCLI("bundle", "show"); strings.Count(bundle, "BEGIN CERTIFICATE") != 1 {
		t.Fatalf("bundle show after revoke holds %d authorities", strings.Count(bundle, "BEGIN CERTIFICATE"))
	}
	as = localAuthorities(t, env, srv, "x509")
	if len(as["old"]) != 0 || len(as["active"]) != 1 {
		t.Fatalf("show after revoke: %v", as)
	}
	testenv.WaitFor(t, 10*time.Second, "the revoked authority gone from the workload's bundle", func() bool {
		cur = fetch(t, ag.Addr())
		b, err := cur.Bundles.GetX509BundleForTrustDomain(td)
		return err == nil && !bundleHas(b.X509Authorities(), first.GetSubjectKeyId())
	})
	b, err = cur.Bundles.GetX509BundleForTrustDomain(td)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := x509svid.Verify(oldSVID.Certificates, b, withinValidity(oldSVID)); err == nil {
		t.Fatal("an SVID of the revoked authority still validates against the workload's bundle")
	}
	if _, _, err := x509svid.Verify(cur.DefaultSVID().Certificates, b); err != nil {
		t.Fatalf("the current SVID does not validate after the revocation: %v", err)
	}
	// The agent keeps working with the server after the revocation.
	const later = "spiffe://example.org/workload/after-revoke"
	srv.CreateEntry(later, ag.ID(), "-selector", uidSelector())
	waitForSVID(t, ag.Addr(), later)

	auditLog, err := os.ReadFile(filepath.Join(srv.Dir, "data", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, action := range []string{"x509_authority_prepare", "x509_authority_activate", "x509_authority_taint", "x509_authority_revoke"} {
		if !strings.Contains(string(auditLog), `"`+action+`"`) {
			t.Fatalf("audit log lacks %s", action)
		}
	}
	if !strings.Contains(string(auditLog), `"rejected"`) {
		t.Fatal("refusals not audited")
	}
}

// agentJWTBundle returns the trust domain's JWT bundle served by the agent.
func agentJWTBundle(t *testing.T, addr string) *jwtbundle.Bundle {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	bs, err := workloadapi.FetchJWTBundles(ctx, workloadapi.WithAddr(addr))
	if err != nil {
		t.Fatalf("FetchJWTBundles: %v", err)
	}
	b, err := bs.GetJWTBundleForTrustDomain(spiffeid.RequireTrustDomainFromString(testenv.TrustDomain))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLocalAuthorityJWTEndToEnd does the same with the JWT signing keys:
// prepare (the agent's JWT bundle gets the key), activate (new tokens
// carry its kid, the old token still validates at the agent), taint and
// revoke the old key (it leaves the agent's JWT bundle and the old token
// stops validating).
func TestLocalAuthorityJWTEndToEnd(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer()
	ag := env.StartAgent(srv, srv.Token())
	const id = "spiffe://example.org/workload/jwt-authority"
	srv.CreateEntry(id, ag.ID(), "-selector", uidSelector(), "-jwtSVIDTTL", "300")
	oldTok := waitForJWTSVID(t, ag.Addr(), id, "aud-old")
	k1 := kidOf(t, oldTok)
	as := localAuthorities(t, env, srv, "jwt")
	if len(as["active"]) != 1 || as["active"][0].GetAuthorityId() != k1 || as["active"][0].GetAlgorithm() != "ES256" {
		t.Fatalf("fresh server: %v", as)
	}
	refused(t, env, srv, "run prepare first", "jwt", "activate", "-authorityID", "nope")
	refused(t, env, srv, "is the active key", "jwt", "taint", "-authorityID", k1)

	mustLocalAuthority(t, env, srv, "jwt", "prepare")
	as = localAuthorities(t, env, srv, "jwt")
	if len(as["prepared"]) != 1 {
		t.Fatalf("show after prepare: %v", as)
	}
	k2 := as["prepared"][0].GetAuthorityId()
	testenv.WaitFor(t, 10*time.Second, "the prepared key in the agent's JWT bundle", func() bool {
		return agentJWTBundle(t, ag.Addr()).HasJWTAuthority(k2)
	})
	if kid := kidOf(t, fetchJWT(t, ag.Addr(), id, "aud-prepared")); kid != k1 {
		t.Fatalf("signed with %s before activation", kid)
	}

	mustLocalAuthority(t, env, srv, "jwt", "activate", "-authorityID", k2)
	n := 0
	testenv.WaitFor(t, 10*time.Second, "a token with the activated key's kid", func() bool {
		n++
		return kidOf(t, fetchJWT(t, ag.Addr(), id, fmt.Sprintf("aud-new-%d", n))) == k2
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := workloadapi.ValidateJWTSVID(ctx, oldTok.Marshal(), "aud-old", workloadapi.WithAddr(ag.Addr())); err != nil {
		t.Fatalf("the old token does not validate after activation: %v", err)
	}
	refused(t, env, srv, "taint it first", "jwt", "revoke", "-authorityID", k1)

	mustLocalAuthority(t, env, srv, "jwt", "taint", "-authorityID", k1)
	if as = localAuthorities(t, env, srv, "jwt"); len(as["old"]) != 1 || !as["old"][0].GetTainted() {
		t.Fatalf("show after taint: %v", as)
	}
	mustLocalAuthority(t, env, srv, "jwt", "revoke", "-authorityID", k1)
	testenv.WaitFor(t, 10*time.Second, "the revoked key gone from the agent's JWT bundle", func() bool {
		return !agentJWTBundle(t, ag.Addr()).HasJWTAuthority(k1)
	})
	if _, err := workloadapi.ValidateJWTSVID(ctx, oldTok.Marshal(), "aud-old", workloadapi.WithAddr(ag.Addr())); err == nil {
		t.Fatal("a token of the revoked key still validates at the agent")
	}
	newTok := fetchJWT(t, ag.Addr(), id, "aud-final")
	if _, err := workloadapi.ValidateJWTSVID(ctx, newTok.Marshal(), "aud-final", workloadapi.WithAddr(ag.Addr())); err != nil {
		t.Fatalf("a new token does not validate: %v", err)
	}
	if as = localAuthorities(t, env, srv, "jwt"); len(as["old"]) != 0 || len(as["active"]) != 1 {
		t.Fatalf("show after revoke: %v", as)
	}
	auditLog, err := os.ReadFile(filepath.Join(srv.Dir, "data", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, action := range []string{"jwt_authority_prepare", "jwt_authority_activate", "jwt_authority_taint", "jwt_authority_revoke"} {
		if !strings.Contains(string(auditLog), `"`+action+`"`) {
			t.Fatalf("audit log lacks %s", action)
		}
	}
}

// TestLocalAuthorityHA runs two servers on one PostgreSQL database: an
// action taken on either server applies to the authorities they share and
// reaches the other within its poll interval (1/50 of the two-minute
// lifetimes here), for the X.509 CA and the JWT keys alike.
func TestLocalAuthorityHA(t *testing.T) {
	opts := []testenv.ServerOption{testenv.WithHCL(postgresDatastore(t)), testenv.WithServerHCL(`ca_ttl = "2m"
  jwt_key_ttl = "2m"
  default_x509_svid_ttl = "30s"
  agent_svid_ttl = "30s"
  default_jwt_svid_ttl = "30s"`)}
	env := testenv.New(t)
	a := env.StartServer(opts...)
	b := env.StartServer(opts...)
	for _, kind := range []string{"x509", "jwt"} {
		first := localAuthorities(t, env, a, kind)["active"][0].GetAuthorityId()
		if got := localAuthorities(t, env, b, kind)["active"][0].GetAuthorityId(); got != first {
			t.Fatalf("%s: servers start with different active authorities %s and %s", kind, first, got)
		}
		// until waits for srv's show to satisfy cond.
		until := func(srv *testenv.Server, what string, cond func(map[string][]*apiv1.LocalAuthority) bool) {
			t.Helper()
			testenv.WaitFor(t, 10*time.Second, kind+": "+what, func() bool { return cond(localAuthorities(t, env, srv, kind)) })
		}
		mustLocalAuthority(t, env, a, kind, "prepare")
		next := localAuthorities(t, env, a, kind)["prepared"][0].GetAuthorityId()
		until(b, "B lists the authority prepared on A", func(as map[string][]*apiv1.LocalAuthority) bool {
			return len(as["prepared"]) == 1 && as["prepared"][0].GetAuthorityId() == next
		})
		mustLocalAuthority(t, env, b, kind, "activate", "-authorityID", next)
		until(a, "A signs with the authority activated on B", func(as map[string][]*apiv1.LocalAuthority) bool {
			return as["active"][0].GetAuthorityId() == next
		})
		mustLocalAuthority(t, env, a, kind, "taint", "-authorityID", first)
		until(b, "B sees the taint made on A", func(as map[string][]*apiv1.LocalAuthority) bool {
			return len(as["old"]) == 1 && as["old"][0].GetTainted()
		})
		mustLocalAuthority(t, env, b, kind, "revoke", "-authorityID", first)
		until(a, "A drops the authority revoked on B", func(as map[string][]*apiv1.LocalAuthority) bool {
			return len(as["old"]) == 0
		})
	}
	for _, srv := range []*testenv.Server{a, b} {
		if n := strings.Count(srv.MustCLI("bundle", "show"), "BEGIN CERTIFICATE"); n != 1 {
			t.Fatalf("bundle show holds %d authorities after the revocation", n)
		}
	}
}

// serverCertAKI returns the authority key ID (hex) of the certificate the
// server presents on its Node API port.
func serverCertAKI(t *testing.T, addr string) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}) //nolint:gosec // only reads the peer certificate
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return hex.EncodeToString(conn.ConnectionState().PeerCertificates[0].AuthorityKeyId)
}
