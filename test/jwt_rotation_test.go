package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/hallmarkid/hallmark/test/testenv"
)

const oidcIssuer = "https://oidc.example.org"

// oidcGet fetches path from the OIDC listener at addr as the TLS proxy in
// front of it would, naming the issuer's host.
func oidcGet(t *testing.T, addr, path string) []byte {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "oidc.example.org"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("OIDC endpoint: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("OIDC %s: %d %s (%v)", path, resp.StatusCode, b, err)
	}
	return b
}

// oidcKeys returns the JWKS served at <issuer>/keys as a JWT bundle.
func oidcKeys(t *testing.T, addr string) *jwtbundle.Bundle {
	t.Helper()
	b, err := jwtbundle.Parse(spiffeid.RequireTrustDomainFromString(testenv.TrustDomain), oidcGet(t, addr, "/keys"))
	if err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	return b
}

// fetchJWT asks the agent for a token for id with the stock client.
func fetchJWT(t *testing.T, addr, id, aud string) *jwtsvid.SVID {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := workloadapi.FetchJWTSVID(ctx, jwtsvid.Params{Audience: aud, Subject: spiffeid.RequireFromString(id)}, workloadapi.WithAddr(addr))
	if err != nil {
		t.Fatalf("FetchJWTSVID: %v", err)
	}
	return s
}

func kidOf(t *testing.T, s *jwtsvid.SVID) string {
	t.Helper()
	tok, err := jose.ParseSigned(s.Marshal(), []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	return tok.Signatures[0].Header.KeyID
}

// TestJWTKeyRotationEndToEnd runs the real server with a 30-second JWT key
// lifetime and its OIDC endpoint on loopback: the next key is listed by
// the OIDC endpoint and reaches the agent's JWT bundle before anything is
// signed with it; a JWT-SVID fetched with the stock go-spiffe client
// before the rotation still validates afterwards, through the agent's
// ValidateJWTSVID and with the OIDC JWKS; tokens issued after the
// activation carry the new kid and the issuer; the old key leaves the
// OIDC JWKS once it has expired.
func TestJWTKeyRotationEndToEnd(t *testing.T) {
	env := testenv.New(t)
	oidcAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	srv := env.StartServer(testenv.WithServerHCL(`jwt_key_ttl = "30s"
  default_jwt_svid_ttl = "20s"
  jwt_issuer = "`+oidcIssuer+`"`), testenv.WithHCL(fmt.Sprintf(`oidc {
  listen_address = %q
}`, oidcAddr)))
	ag := env.StartAgent(srv, srv.Token())
	const id = "spiffe://example.org/workload/jwt-rotation"
	srv.CreateEntry(id, ag.ID(), "-selector", uidSelector(), "-jwtSVIDTTL", "60")

	var d struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(oidcGet(t, oidcAddr, "/.well-known/openid-configuration"), &d); err != nil || d.Issuer != oidcIssuer || d.JWKSURI != oidcIssuer+"/keys" {
		t.Fatalf("discovery %+v (%v)", d, err)
	}
	first := waitForJWTSVID(t, ag.Addr(), id, "aud-0")
	k1 := kidOf(t, first)
	if first.Claims["iss"] != oidcIssuer {
		t.Fatalf("iss = %v, want %s", first.Claims["iss"], oidcIssuer)
	}
	if keys := oidcKeys(t, oidcAddr).JWTAuthorities(); len(keys) != 1 || keys[k1] == nil {
		t.Fatalf("OIDC keys at start %v, want only %s", keys, k1)
	}
	// The entry asks for 60 s; the token expires with its key.
	if ttl := time.Until(first.Expiry); ttl > 30*time.Second {
		t.Fatalf("token outlives its 30 s key by %s", ttl-30*time.Second)
	}

	// Half-way: the next key is published — OIDC and the agent's bundle —
	// while tokens are still signed with the first.
	var k2 string
	testenv.WaitFor(t, 25*time.Second, "next JWT key in the OIDC JWKS", func() bool {
		for kid := range oidcKeys(t, oidcAddr).JWTAuthorities() {
			if kid != k1 {
				k2 = kid
			}
		}
		return k2 != ""
	})
	testenv.WaitFor(t, 5*time.Second, "next JWT key in the agent's bundle", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		bs, err := workloadapi.FetchJWTBundles(ctx, workloadapi.WithAddr(ag.Addr()))
		if err != nil {
			return false
		}
		b, err := bs.GetJWTBundleForTrustDomain(spiffeid.RequireTrustDomainFromString(testenv.TrustDomain))
		return err == nil && b.HasJWTAuthority(k2) && b.HasJWTAuthority(k1)
	})
	if kid := kidOf(t, fetchJWT(t, ag.Addr(), id, "aud-published")); kid != k1 {
		t.Fatalf("signed with %s as soon as it was published; want %s until activation", kid, k1)
	}

	// Activation: new tokens carry the new kid.
	var after *jwtsvid.SVID
	n := 0
	testenv.WaitFor(t, 20*time.Second, "a token signed with the next key", func() bool {
		n++
		after = fetchJWT(t, ag.Addr(), id, fmt.Sprintf("aud-%d", n))
		return kidOf(t, after) == k2
	})

	// The token from before the rotation still validates, at the agent and
	// with the JWKS relying parties fetch; so does the new one.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	jwks := oidcKeys(t, oidcAddr)
	for _, tok := range []*jwtsvid.SVID{first, after} {
		aud := tok.Audience[0]
		if _, err := workloadapi.ValidateJWTSVID(ctx, tok.Marshal(), aud, workloadapi.WithAddr(ag.Addr())); err != nil {
			t.Fatalf("ValidateJWTSVID of the %s token: %v", kidOf(t, tok), err)
		}
		if _, err := jwtsvid.ParseAndValidate(tok.Marshal(), jwks, []string{aud}); err != nil {
			t.Fatalf("the %s token does not validate with the OIDC JWKS: %v", kidOf(t, tok), err)
		}
	}
	if after.Claims["iss"] != oidcIssuer {
		t.Fatalf("iss after rotation = %v", after.Claims["iss"])
	}

	// Expiry of the first key: it leaves the JWKS.
	testenv.WaitFor(t, 15*time.Second, "the first key pruned from the OIDC JWKS", func() bool {
		_, still := oidcKeys(t, oidcAddr).FindJWTAuthority(k1)
		return !still
	})
}

// TestHAJWTSharedKeys runs two servers on one PostgreSQL database, each
// with its own agent, and a 30-second JWT key lifetime: both sign with the
// same key and publish the same keys (shared through the database), so a
// token fetched at one server's agent validates at the other's, before
// and after a rotation.
func TestHAJWTSharedKeys(t *testing.T) {
	hcl := testenv.WithHCL(postgresDatastore(t))
	jwtHCL := testenv.WithServerHCL(`jwt_key_ttl = "30s"
  default_jwt_svid_ttl = "20s"`)
	env := testenv.New(t)
	a := env.StartServer(hcl, jwtHCL)
	b := env.StartServer(hcl, jwtHCL)
	agA := env.StartAgent(a, a.Token())
	agB := env.StartAgent(b, b.Token())
	const idA, idB = "spiffe://example.org/ha/jwt-a", "spiffe://example.org/ha/jwt-b"
	a.CreateEntry(idA, agA.ID(), "-selector", uidSelector(), "-jwtSVIDTTL", "60")
	b.CreateEntry(idB, agB.ID(), "-selector", uidSelector(), "-jwtSVIDTTL", "60")
	tokA := waitForJWTSVID(t, agA.Addr(), idA, "aud-b")
	tokB := waitForJWTSVID(t, agB.Addr(), idB, "aud-a")
	k1 := kidOf(t, tokA)
	if kidOf(t, tokB) != k1 {
		t.Fatalf("servers sign with different keys: %s and %s", k1, kidOf(t, tokB))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cross := func(step string, ta, tb *jwtsvid.SVID) {
		t.Helper()
		if _, err := workloadapi.ValidateJWTSVID(ctx, ta.Marshal(), "aud-b", workloadapi.WithAddr(agB.Addr())); err != nil {
			t.Fatalf("%s: A's token at B's agent: %v", step, err)
		}
		if _, err := workloadapi.ValidateJWTSVID(ctx, tb.Marshal(), "aud-a", workloadapi.WithAddr(agA.Addr())); err != nil {
			t.Fatalf("%s: B's token at A's agent: %v", step, err)
		}
	}
	cross("start", tokA, tokB)

	// After the activation both sign with the same new key, and the tokens
	// from before still validate at both agents.
	var newA, newB *jwtsvid.SVID
	n := 0
	testenv.WaitFor(t, 30*time.Second, "both servers signing with the next key", func() bool {
		n++
		newA = fetchJWT(t, agA.Addr(), idA, fmt.Sprintf("aud-b-%d", n))
		newB = fetchJWT(t, agB.Addr(), idB, fmt.Sprintf("aud-a-%d", n))
		return kidOf(t, newA) != k1 && kidOf(t, newB) != k1
	})
	if kidOf(t, newA) != kidOf(t, newB) {
		t.Fatalf("after rotation the servers sign with %s and %s", kidOf(t, newA), kidOf(t, newB))
	}
	cross("old tokens after rotation", tokA, tokB)
	if _, err := workloadapi.ValidateJWTSVID(ctx, newA.Marshal(), newA.Audience[0], workloadapi.WithAddr(agB.Addr())); err != nil {
		t.Fatalf("A's new token at B's agent: %v", err)
	}
	if _, err := workloadapi.ValidateJWTSVID(ctx, newB.Marshal(), newB.Audience[0], workloadapi.WithAddr(agA.Addr())); err != nil {
		t.Fatalf("B's new token at A's agent: %v", err)
	}
}
