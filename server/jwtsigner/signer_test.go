package jwtsigner_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"

	"github.com/hallmarkid/hallmark/server/jwtsigner"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

func newSigner(t *testing.T, dir, alg string) *jwtsigner.Signer {
	t.Helper()
	s, err := jwtsigner.New(jwtsigner.Config{TrustDomain: td, Dir: dir, Algorithm: alg})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func bundleOf(s *jwtsigner.Signer) *jwtbundle.Bundle {
	return jwtbundle.FromJWTAuthorities(td, s.JWTAuthorities())
}

func TestSignAndValidateEachAlgorithm(t *testing.T) {
	for _, tt := range []struct {
		name    string
		alg     string
		wantAlg jose.SignatureAlgorithm
	}{
		{name: "default", alg: "", wantAlg: jose.ES256},
		{name: "ES256", alg: jwtsigner.ES256, wantAlg: jose.ES256},
		{name: "ES384", alg: jwtsigner.ES384, wantAlg: jose.ES384},
		{name: "RS256", alg: jwtsigner.RS256, wantAlg: jose.RS256},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newSigner(t, filepath.Join(t.TempDir(), "jwt"), tt.alg)
			id := spiffeid.RequireFromString("spiffe://example.org/w")
			got, err := s.SignJWTSVID(context.Background(), jwtsigner.JWTSVIDParams{ID: id, Audience: []string{"a", "b"}})
			if err != nil {
				t.Fatal(err)
			}
			if ttl := got.ExpiresAt.Sub(got.IssuedAt); ttl != jwtsigner.DefaultTTL {
				t.Errorf("TTL = %s, want %s", ttl, jwtsigner.DefaultTTL)
			}
			svid, err := jwtsvid.ParseAndValidate(got.Token, bundleOf(s), []string{"b"})
			if err != nil {
				t.Fatalf("go-spiffe rejects our token: %v", err)
			}
			if svid.ID != id || len(svid.Audience) != 2 {
				t.Errorf("svid = %v %v", svid.ID, svid.Audience)
			}
			if _, ok := svid.Claims["iat"]; !ok {
				t.Error("no iat claim")
			}
			tok, err := jose.ParseSigned(got.Token, []jose.SignatureAlgorithm{tt.wantAlg})
			if err != nil {
				t.Fatalf("algorithm: %v", err)
			}
			h := tok.Signatures[0].Header
			if h.KeyID != s.ActiveKeyID() || h.KeyID != got.KeyID || h.ExtraHeaders[jose.HeaderType] != "JWT" {
				t.Errorf("header kid=%q typ=%v, want kid %q typ JWT", h.KeyID, h.ExtraHeaders[jose.HeaderType], s.ActiveKeyID())
			}
		})
	}
}

func TestKeyPersistsAcrossRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "jwt")
	s1 := newSigner(t, dir, jwtsigner.ES256)
	fi, err := os.Stat(filepath.Join(dir, jwtsigner.KeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode %#o, want 0600", perm)
	}
	if di, _ := os.Stat(dir); di.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %#o, want 0700", di.Mode().Perm())
	}
	tok, err := s1.SignJWTSVID(context.Background(), jwtsigner.JWTSVIDParams{ID: spiffeid.RequireFromString("spiffe://example.org/w"), Audience: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	// A restart configured with another algorithm keeps the persisted key.
	s2 := newSigner(t, dir, jwtsigner.RS256)
	if s1.ActiveKeyID() != s2.ActiveKeyID() {
		t.Fatalf("kid changed across restart: %s → %s", s1.ActiveKeyID(), s2.ActiveKeyID())
	}
	if _, err := jwtsvid.ParseAndValidate(tok.Token, bundleOf(s2), []string{"x"}); err != nil {
		t.Fatalf("token from before the restart does not validate after: %v", err)
	}
	if _, ok := s2.JWTAuthorities()[s1.ActiveKeyID()].(*ecdsa.PublicKey); !ok {
		t.Fatal("persisted ES256 key replaced")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("directory holds %d files, want only the key", len(ents))
	}
}

func TestNewRefusesBadState(t *testing.T) {
	keyFile := func(t *testing.T, dir string) string {
		newSigner(t, dir, jwtsigner.ES256)
		return filepath.Join(dir, jwtsigner.KeyFileName)
	}
	for _, tt := range []struct {
		name    string
		setup   func(t *testing.T, dir string)
		alg     string
		wantErr string
	}{
		{name: "unknown algorithm", alg: "HS256", wantErr: "unknown algorithm"},
		{name: "none algorithm", alg: "none", wantErr: "unknown algorithm"},
		{name: "key readable by others", setup: func(t *testing.T, dir string) {
			if err := os.Chmod(keyFile(t, dir), 0o644); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "want 0600"},
		{name: "corrupt key", setup: func(t *testing.T, dir string) {
			if err := os.WriteFile(keyFile(t, dir), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "parse PKCS#8"},
		{name: "not PEM", setup: func(t *testing.T, dir string) {
			if err := os.WriteFile(keyFile(t, dir), []byte("garbage"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "no PEM block"},
		{name: "group-writable dir", setup: func(t *testing.T, dir string) {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, 0o770); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "group and others"},
		{name: "key is a symlink", setup: func(t *testing.T, dir string) {
			p := keyFile(t, dir)
			if err := os.Rename(p, p+".real"); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(p+".real", p); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "not a regular file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "jwt")
			if tt.setup != nil {
				tt.setup(t, dir)
			}
			_, err := jwtsigner.New(jwtsigner.Config{TrustDomain: td, Dir: dir, Algorithm: tt.alg})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestSignRefusesBadParams(t *testing.T) {
	s := newSigner(t, filepath.Join(t.TempDir(), "jwt"), "")
	id := spiffeid.RequireFromString("spiffe://example.org/w")
	many := make([]string, jwtsigner.MaxAudiences+1)
	for i := range many {
		many[i] = "a"
	}
	for _, tt := range []struct {
		name    string
		p       jwtsigner.JWTSVIDParams
		wantErr string
	}{
		{name: "no ID", p: jwtsigner.JWTSVIDParams{Audience: []string{"a"}}, wantErr: "SPIFFE ID is required"},
		{name: "other trust domain", p: jwtsigner.JWTSVIDParams{ID: spiffeid.RequireFromString("spiffe://other.org/w"), Audience: []string{"a"}}, wantErr: "not in trust domain"},
		{name: "trust domain ID", p: jwtsigner.JWTSVIDParams{ID: td.ID(), Audience: []string{"a"}}, wantErr: "no path"},
		{name: "no audience", p: jwtsigner.JWTSVIDParams{ID: id}, wantErr: "audience is required"},
		{name: "empty audience", p: jwtsigner.JWTSVIDParams{ID: id, Audience: []string{""}}, wantErr: "empty audience"},
		{name: "too many audiences", p: jwtsigner.JWTSVIDParams{ID: id, Audience: many}, wantErr: "at most"},
		{name: "long audience", p: jwtsigner.JWTSVIDParams{ID: id, Audience: []string{strings.Repeat("a", jwtsigner.MaxAudienceLength+1)}}, wantErr: "at most"},
		{name: "invalid UTF-8", p: jwtsigner.JWTSVIDParams{ID: id, Audience: []string{"\xff"}}, wantErr: "UTF-8"},
		{name: "negative TTL", p: jwtsigner.JWTSVIDParams{ID: id, Audience: []string{"a"}, TTL: -time.Second}, wantErr: "out of range"},
		{name: "huge TTL", p: jwtsigner.JWTSVIDParams{ID: id, Audience: []string{"a"}, TTL: jwtsigner.MaxTTL + time.Second}, wantErr: "out of range"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.SignJWTSVID(context.Background(), tt.p)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestTTLAndIssuer(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	s, err := jwtsigner.New(jwtsigner.Config{TrustDomain: td, Dir: filepath.Join(t.TempDir(), "jwt"), Issuer: "https://oidc.example.org",
		Clock: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.SignJWTSVID(context.Background(), jwtsigner.JWTSVIDParams{ID: spiffeid.RequireFromString("spiffe://example.org/w"), Audience: []string{"a"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := jose.ParseSigned(got.Token, []jose.SignatureAlgorithm{jose.ES256})
	payload := string(tok.UnsafePayloadWithoutVerification())
	for _, want := range []string{`"iss":"https://oidc.example.org"`,
		fmt.Sprintf(`"exp":%d`, now.Add(time.Hour).Unix()), fmt.Sprintf(`"iat":%d`, now.Unix()), `"sub":"spiffe://example.org/w"`} {
		if !strings.Contains(payload, want) {
			t.Errorf("payload %s lacks %s", payload, want)
		}
	}
	if !got.ExpiresAt.Equal(now.Add(time.Hour)) {
		t.Errorf("ExpiresAt = %s", got.ExpiresAt)
	}
}

func TestKeyIDIsThumbprint(t *testing.T) {
	s := newSigner(t, filepath.Join(t.TempDir(), "jwt"), jwtsigner.RS256)
	for kid, pub := range s.JWTAuthorities() {
		if _, ok := pub.(*rsa.PublicKey); !ok {
			t.Fatalf("key %T", pub)
		}
		want, err := jwtsigner.KeyID(pub)
		if err != nil || want != kid || len(kid) != 43 {
			t.Fatalf("kid %q, thumbprint %q (%v)", kid, want, err)
		}
	}
}
