package oidc_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/server/jwtsigner"
	"github.com/hallmarkid/hallmark/server/oidc"
)

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// A relying party follows discovery to the JWKS and verifies a token
// signed with the issuer set.
func TestDiscoveryAndJWKSVerifyToken(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	for _, alg := range []string{jwtsigner.ES256, jwtsigner.ES384, jwtsigner.RS256} {
		t.Run(alg, func(t *testing.T) {
			mux := http.NewServeMux()
			srv := httptest.NewServer(mux)
			defer srv.Close()
			issuer := srv.URL + "/tenant"
			s, err := jwtsigner.New(jwtsigner.Config{TrustDomain: td, Dir: filepath.Join(t.TempDir(), "jwt"), Algorithm: alg, Issuer: issuer})
			if err != nil {
				t.Fatal(err)
			}
			h, err := oidc.Handler(issuer, s.JWTAuthorities)
			if err != nil {
				t.Fatal(err)
			}
			mux.Handle("/tenant/", h)

			code, body := get(t, issuer+oidc.DiscoveryPath)
			var d oidc.Discovery
			if code != 200 || json.Unmarshal(body, &d) != nil || d.Issuer != issuer || d.JWKSURI != issuer+"/keys" {
				t.Fatalf("discovery %d %s", code, body)
			}
			code, body = get(t, d.JWKSURI)
			var set jose.JSONWebKeySet
			if code != 200 || json.Unmarshal(body, &set) != nil || len(set.Keys) != 1 || set.Keys[0].Algorithm != alg || set.Keys[0].Use != "sig" {
				t.Fatalf("JWKS %d %s", code, body)
			}
			tok, err := s.SignJWTSVID(context.Background(), jwtsigner.JWTSVIDParams{ID: spiffeid.RequireFromString("spiffe://example.org/w"), Audience: []string{"sts.amazonaws.com"}})
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := jwt.ParseSigned(tok.Token, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
			if err != nil {
				t.Fatal(err)
			}
			keys := set.Key(parsed.Headers[0].KeyID)
			if len(keys) != 1 {
				t.Fatalf("kid %q not in JWKS", parsed.Headers[0].KeyID)
			}
			var claims jwt.Claims
			if err := parsed.Claims(keys[0].Key, &claims); err != nil {
				t.Fatalf("token does not verify with the published key: %v", err)
			}
			if err := claims.Validate(jwt.Expected{Issuer: d.Issuer, AnyAudience: []string{"sts.amazonaws.com"}}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestHandlerRefuses(t *testing.T) {
	keys := func() map[string]crypto.PublicKey { return nil }
	for _, tt := range []struct {
		name    string
		issuer  string
		keys    func() map[string]crypto.PublicKey
		wantErr string
	}{
		{name: "plain http", issuer: "http://oidc.example.org", keys: keys, wantErr: "https"},
		{name: "no host", issuer: "https://", keys: keys, wantErr: "no host"},
		{name: "query", issuer: "https://oidc.example.org/?a=b", keys: keys, wantErr: "query"},
		{name: "user info", issuer: "https://u:p@oidc.example.org", keys: keys, wantErr: "user info"},
		{name: "no keys", issuer: "https://oidc.example.org", wantErr: "required"},
		{name: "not a URL", issuer: "https://%zz", keys: keys, wantErr: "issuer"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := oidc.Handler(tt.issuer, tt.keys)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}

	pub, _, _ := ed25519.GenerateKey(nil)
	h, err := oidc.Handler("https://oidc.example.org", func() map[string]crypto.PublicKey { return map[string]crypto.PublicKey{"ed": pub} })
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, method, path string
		wantCode           int
		wantBody           string
	}{
		{name: "POST", method: http.MethodPost, path: "/keys", wantCode: http.StatusMethodNotAllowed},
		{name: "unknown path", method: http.MethodGet, path: "/other", wantCode: http.StatusNotFound},
		{name: "unsupported key left out", method: http.MethodGet, path: "/keys", wantCode: http.StatusOK, wantBody: `{"keys":[]}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
			if rec.Code != tt.wantCode || (tt.wantBody != "" && strings.TrimSpace(rec.Body.String()) != tt.wantBody) {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
		})
	}
}
