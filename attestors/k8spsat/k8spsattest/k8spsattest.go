package k8spsattest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	authv1 "k8s.io/api/authentication/v1"

	"github.com/hallmarkid/hallmark/attestors/k8spsat/internal/fakeapi"
)

// APIServer is a running strict TokenReview API server: see
// StartAPIServer.
type APIServer = fakeapi.Server

// AdminToken is the bearer credential the API server accepts from the
// hallmark server (put it in the kubeconfig: see Kubeconfig).
const AdminToken = fakeapi.AdminToken

// StartAPIServer serves TokenReviews over TLS until the test ends. It
// accepts only POST /apis/authentication.k8s.io/v1/tokenreviews with
// AdminToken and a JSON TokenReview naming audiences; a token in reviews
// gets that status, any other "invalid bearer token". As a real API server
// does, it authenticates a token only for the requested audiences the
// token carries (its status's Audiences; Review gives DefaultAudience).
func StartAPIServer(t testing.TB, reviews map[string]authv1.TokenReviewStatus) *APIServer {
	t.Helper()
	return fakeapi.Start(t, reviews)
}

// Kubeconfig writes a kubeconfig that names srv, trusts its certificate
// and authenticates with AdminToken, and returns its path.
func Kubeconfig(t testing.TB, srv *APIServer) string {
	t.Helper()
	return srv.Kubeconfig(t, "    token: "+AdminToken)
}

// Pod is the agent pod a token is bound to.
type Pod struct {
	Namespace, ServiceAccount string
	Name, UID                 string
	// NodeName and NodeUID are in tokens of Kubernetes ≥ 1.30; leave them
	// empty for older clusters.
	NodeName, NodeUID string
}

// DefaultAudience is the audience a hallmark server of the trust domain
// example.org requires by default (k8spsat.DefaultAudience); the tokens
// these helpers describe carry it unless told otherwise.
const DefaultAudience = fakeapi.DefaultAudience

// Review is the API server's review of a projected token bound to p and
// valid for DefaultAudience.
func Review(p Pod) authv1.TokenReviewStatus {
	extra := map[string]authv1.ExtraValue{
		"authentication.kubernetes.io/pod-name": {p.Name},
		"authentication.kubernetes.io/pod-uid":  {p.UID},
	}
	if p.NodeName != "" {
		extra["authentication.kubernetes.io/node-name"] = authv1.ExtraValue{p.NodeName}
		extra["authentication.kubernetes.io/node-uid"] = authv1.ExtraValue{p.NodeUID}
	}
	return fakeapi.SAStatus(p.Namespace, p.ServiceAccount, extra)
}

// Issuer is a cluster's service-account token issuer: an ES256 key whose
// JWKS is served over HTTPS at JWKSURL (GET only, that path only).
type Issuer struct {
	// Name is the "iss" of its tokens.
	Name string
	// JWKSURL serves the public key set.
	JWKSURL string
	// CAPEM is the certificate of the JWKS server, for jwks_ca_file.
	CAPEM []byte

	key     *ecdsa.PrivateKey
	kid     string
	fetches atomic.Int64
}

// NewIssuer starts an issuer until the test ends.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	iss := &Issuer{key: key, kid: "sa-key-1"}
	set, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: iss.kid, Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	const path = "/openid/v1/jwks"
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != path || r.URL.RawQuery != "" {
			http.NotFound(w, r)
			return
		}
		iss.fetches.Add(1)
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(set)
	}))
	t.Cleanup(srv.Close)
	iss.Name = srv.URL
	iss.JWKSURL = srv.URL + path
	iss.CAPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	return iss
}

// Fetches returns how many times the JWKS was served.
func (i *Issuer) Fetches() int { return int(i.fetches.Load()) }

// Token mints a projected service-account token bound to p for audience,
// valid from a minute ago for ttl, as a kubelet would project it.
func (i *Issuer) Token(t testing.TB, p Pod, audience []string, ttl time.Duration) string {
	t.Helper()
	now := time.Now()
	k8s := map[string]any{
		"namespace":      p.Namespace,
		"serviceaccount": map[string]any{"name": p.ServiceAccount, "uid": "5a5a5a5a-0000-4000-8000-000000000000"},
		"pod":            map[string]any{"name": p.Name, "uid": p.UID},
	}
	if p.NodeName != "" {
		k8s["node"] = map[string]any{"name": p.NodeName, "uid": p.NodeUID}
	}
	claims := map[string]any{
		"iss":           i.Name,
		"sub":           fmt.Sprintf("system:serviceaccount:%s:%s", p.Namespace, p.ServiceAccount),
		"aud":           audience,
		"iat":           now.Add(-time.Minute).Unix(),
		"nbf":           now.Add(-time.Minute).Unix(),
		"exp":           now.Add(ttl).Unix(),
		"kubernetes.io": k8s,
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: i.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", i.kid))
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
