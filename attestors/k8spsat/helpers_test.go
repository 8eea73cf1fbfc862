package k8spsat_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/attestors"
	"github.com/hallmarkid/hallmark/attestors/k8spsat"
)

const (
	issuer  = "https://oidc.example.test/id/ABC"
	podUID  = "0f0e0d0c-1111-4222-8333-444455556666"
	nodeUID = "aaaabbbb-cccc-4ddd-8eee-ffff00001111"
)

var (
	td = spiffeid.RequireTrustDomainFromString("example.org")
	t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

// keys used to sign test tokens; the RSA one is made once (it is slow).
var (
	ecKey, attackerKey *ecdsa.PrivateKey
	rsaKey             *rsa.PrivateKey
	keysOnce           sync.Once
)

func testKeys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if attackerKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
}

// jwksJSON returns the public JWKS of the given keys, by key ID.
func jwksJSON(t testing.TB, keys map[string]crypto.Signer) []byte {
	t.Helper()
	var set jose.JSONWebKeySet
	for kid, k := range keys {
		alg := "ES256"
		if _, ok := k.(*rsa.PrivateKey); ok {
			alg = "RS256"
		}
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Public(), KeyID: kid, Algorithm: alg, Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// claims returns the claims of a valid projected token at t0.
func claims() map[string]any {
	return map[string]any{
		"iss": issuer,
		"sub": "system:serviceaccount:hallmark:agent",
		"aud": []string{k8spsat.DefaultAudience(td)},
		"exp": t0.Add(10 * time.Minute).Unix(),
		"iat": t0.Add(-time.Minute).Unix(),
		"nbf": t0.Add(-time.Minute).Unix(),
		"kubernetes.io": map[string]any{
			"namespace":      "hallmark",
			"serviceaccount": map[string]any{"name": "agent", "uid": "5a5a5a5a-0000-4000-8000-000000000000"},
			"pod":            map[string]any{"name": "hallmark-agent-x7k2p", "uid": podUID},
			"node":           map[string]any{"name": "node-1", "uid": nodeUID},
		},
	}
}

// mint signs claims with key under kid.
func mint(t testing.TB, key any, alg jose.SignatureAlgorithm, kid string, c map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// unsigned returns an alg "none" token.
func unsigned(c map[string]any) string {
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT","kid":"ec1"}`))
	p, _ := json.Marshal(c)
	return h + "." + base64.RawURLEncoding.EncodeToString(p) + "."
}

func payload(t testing.TB, cluster, token string) []byte {
	t.Helper()
	b, err := json.Marshal(k8spsat.Payload{Cluster: cluster, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func serverCA(srv *httptest.Server) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func verify(v *k8spsat.Verifier, p []byte) (attestors.Result, error) {
	return v.Verify(context.Background(), attestors.VerifyRequest{Payload: p, TrustDomain: td})
}
