package k8spsat_test

import (
	"context"
	"crypto"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/attestors"
	"github.com/hallmarkid/hallmark/attestors/k8spsat"
)

func offlineVerifier(t testing.TB, now func() time.Time) *k8spsat.Verifier {
	t.Helper()
	testKeys(t)
	jwks := writeFile(t, "jwks.json", jwksJSON(t, map[string]crypto.Signer{"ec1": ecKey, "rsa1": rsaKey}))
	v, err := k8spsat.NewVerifier(k8spsat.ServerConfig{
		Now: now,
		Clusters: []k8spsat.ClusterConfig{{
			Name:                    "prod-eu",
			ServiceAccountAllowList: []string{"hallmark:agent"},
			JWKSFile:                jwks,
			Issuer:                  issuer,
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerifyOffline(t *testing.T) {
	testKeys(t)
	with := func(mod func(map[string]any)) map[string]any {
		c := claims()
		mod(c)
		return c
	}
	k8sClaim := func(c map[string]any) map[string]any { return c["kubernetes.io"].(map[string]any) }
	tests := []struct {
		name      string
		cluster   string
		token     func() string
		rawPay    []byte
		renewal   string
		wantID    string
		wantSels  []string
		wantErr   string
		wantNoSel string
	}{
		{name: "EC token with node UID", token: func() string { return mint(t, ecKey, jose.ES256, "ec1", claims()) },
			wantID: "spiffe://example.org/agent/k8s_psat/prod-eu/" + nodeUID,
			wantSels: []string{"k8s_psat:agent_node_name:node-1", "k8s_psat:agent_node_uid:" + nodeUID,
				"k8s_psat:agent_ns:hallmark", "k8s_psat:agent_pod_name:hallmark-agent-x7k2p",
				"k8s_psat:agent_pod_uid:" + podUID, "k8s_psat:agent_sa:agent", "k8s_psat:cluster:prod-eu"}},
		{name: "RSA token without node falls back to pod UID",
			token: func() string {
				return mint(t, rsaKey, jose.RS256, "rsa1", with(func(c map[string]any) { delete(k8sClaim(c), "node") }))
			},
			wantID:   "spiffe://example.org/agent/k8s_psat/prod-eu/" + podUID,
			wantSels: []string{"k8s_psat:agent_pod_uid:" + podUID}, wantNoSel: "k8s_psat:agent_node_name:node-1"},
		{name: "token without kid tries every key", token: func() string { return mint(t, ecKey, jose.ES256, "", claims()) },
			wantID: "spiffe://example.org/agent/k8s_psat/prod-eu/" + nodeUID},
		{name: "renewal keeps the ID", renewal: "spiffe://example.org/agent/k8s_psat/prod-eu/" + nodeUID,
			token:  func() string { return mint(t, ecKey, jose.ES256, "ec1", claims()) },
			wantID: "spiffe://example.org/agent/k8s_psat/prod-eu/" + nodeUID},

		{name: "renewal with another ID", renewal: "spiffe://example.org/agent/k8s_psat/prod-eu/other",
			token: func() string { return mint(t, ecKey, jose.ES256, "ec1", claims()) }, wantErr: "renewal"},
		{name: "expired", token: func() string {
			return mint(t, ecKey, jose.ES256, "ec1", with(func(c map[string]any) { c["exp"] = t0.Add(-time.Minute).Unix() }))
		}, wantErr: "expired"},
		{name: "no expiry", token: func() string {
			return mint(t, ecKey, jose.ES256, "ec1", with(func(c map[string]any) { delete(c, "exp") }))
		}, wantErr: "no expiry"},
		{name: "not valid yet", token: func() string {
			return mint(t, ecKey, jose.ES256, "ec1", with(func(c map[string]any) { c["nbf"] = t0.Add(time.Hour).Unix() }))
		}, wantErr: "not valid yet"},
		{name: "wrong audience", token: func() string {
			return mint(t, ecKey, jose.ES256, "ec1", with(func(c map[string]any) { c["aud"] = []string{"https://kubernetes.default.svc"} }))
		}, wantErr: "audience"},
		{name: "wrong issuer", token: func() string {
			return mint(t, ecKey, jose.ES256, "ec1", with(func(c map[string]any) { c["iss"] = "https://evil.test" }))
		}, wantErr: "issuer"},
		{name: "service account not allowed", token: func() string {
			return mint(t, ecKey, jose.ES256, "ec1", with(func(c map[string]any) {
				c["sub"] = "system:serviceaccount:hallmark:default"
				k8sClaim(c)["serviceaccount"] = map[string]any{"name": "default"}
			}))
		}, wantErr: `service account "hallmark:default" is not allowed`},
		{name: "subject disagrees with kubernetes.io claim", token: func() string {
			return mint(t, ecKey, jose.ES256, "ec1", with(func(c map[string]any) { c["sub"] = "system:serviceaccount:kube-system:admin" }))
		}, wantErr: "subject"},
		{name: "legacy token without pod binding", token: func() string {
			return mint(t, ecKey, jose.ES256, "ec1", with(func(c map[string]any) {
				delete(k8sClaim(c), "pod")
				delete(k8sClaim(c), "node")
			}))
		}, wantErr: "not bound to a pod"},
		{name: "alg none", token: func() string { return unsigned(claims()) }, wantErr: "parse token"},
		{name: "HS256 with the public key as secret", token: func() string {
			return mint(t, []byte(jwksJSON(t, map[string]crypto.Signer{"ec1": ecKey})), jose.HS256, "ec1", claims())
		}, wantErr: "parse token"},
		{name: "signed by another key under a known kid", token: func() string { return mint(t, attackerKey, jose.ES256, "ec1", claims()) },
			wantErr: "does not verify"},
		{name: "alg of key mismatched", token: func() string { return mint(t, rsaKey, jose.PS256, "rsa1", claims()) },
			wantErr: "does not verify"},
		{name: "unknown kid", token: func() string { return mint(t, attackerKey, jose.ES256, "evil", claims()) },
			wantErr: "no issuer key"},
		{name: "unknown cluster", cluster: "other", token: func() string { return mint(t, ecKey, jose.ES256, "ec1", claims()) },
			wantErr: `cluster "other" is not configured`},
		{name: "UID unfit for a SPIFFE ID", token: func() string {
			return mint(t, ecKey, jose.ES256, "ec1", with(func(c map[string]any) { k8sClaim(c)["node"] = map[string]any{"name": "n", "uid": "../x"} }))
		}, wantErr: "agent ID"},
		{name: "garbage payload", rawPay: []byte("{not json"), wantErr: "parse payload"},
		{name: "no token", rawPay: []byte(`{"cluster":"prod-eu"}`), wantErr: "no token"},
		{name: "not a JWT", token: func() string { return "abc" }, wantErr: "parse token"},
		{name: "huge token", token: func() string { return strings.Repeat("a", k8spsat.MaxTokenSize+1) }, wantErr: "larger than"},
	}
	v := offlineVerifier(t, func() time.Time { return t0 })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.rawPay
			if p == nil {
				cluster := tt.cluster
				if cluster == "" {
					cluster = "prod-eu"
				}
				p = payload(t, cluster, tt.token())
			}
			req := attestors.VerifyRequest{Payload: p, TrustDomain: td}
			if tt.renewal != "" {
				req.Renewal, req.CurrentID = true, spiffeid.RequireFromString(tt.renewal)
			}
			res, err := v.Verify(context.Background(), req)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if !res.AgentID.IsZero() || res.Selectors != nil {
					t.Fatal("a result with an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if res.AgentID.String() != tt.wantID || !res.CanReattest {
				t.Fatalf("got %s reattest=%v, want %s", res.AgentID, res.CanReattest, tt.wantID)
			}
			var got []string
			for _, s := range res.Selectors {
				got = append(got, s.String())
			}
			for _, w := range tt.wantSels {
				if !slices.Contains(got, w) {
					t.Errorf("missing %q in %v", w, got)
				}
			}
			if tt.wantNoSel != "" && slices.Contains(got, tt.wantNoSel) {
				t.Errorf("unexpected %q", tt.wantNoSel)
			}
			if res.Evidence["token_sha256"] == "" || res.Evidence["cluster"] != "prod-eu" {
				t.Errorf("evidence %v", res.Evidence)
			}
		})
	}
}

// The verifier fetches keys from the issuer's JWKS URL over verified TLS,
// and picks up a rotated key when a token names an unknown key ID.
func TestVerifyJWKSURLRotation(t *testing.T) {
	testKeys(t)
	var mu sync.Mutex
	served := jwksJSON(t, map[string]crypto.Signer{"ec1": ecKey})
	hits := 0
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/keys" {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		hits++
		_, _ = w.Write(served)
	}))
	t.Cleanup(srv.Close)
	clk := &clock{t: t0}
	conf := k8spsat.ServerConfig{
		Now: clk.Now,
		Clusters: []k8spsat.ClusterConfig{{
			Name: "eks", ServiceAccountAllowList: []string{"hallmark:agent"},
			JWKSURL: srv.URL + "/keys", JWKSCAFile: writeFile(t, "ca.pem", serverCA(srv)), Issuer: issuer,
		}},
	}
	v, err := k8spsat.NewVerifier(conf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verify(v, payload(t, "eks", mint(t, ecKey, jose.ES256, "ec1", claims()))); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	// Keys are cached.
	if _, err := verify(v, payload(t, "eks", mint(t, ecKey, jose.ES256, "ec1", claims()))); err != nil || hits != 1 {
		t.Fatalf("Verify: %v, JWKS fetched %d times", err, hits)
	}
	// Rotation: a token under a new kid. Unknown kids refresh the set,
	// at most once per 10 s.
	mu.Lock()
	served = jwksJSON(t, map[string]crypto.Signer{"ec1": ecKey, "rsa2": rsaKey})
	mu.Unlock()
	tok := mint(t, rsaKey, jose.RS256, "rsa2", claims())
	if _, err := verify(v, payload(t, "eks", tok)); err == nil || !strings.Contains(err.Error(), "no issuer key") {
		t.Fatalf("refresh was not rate-limited: %v", err)
	}
	clk.Add(11 * time.Second)
	if _, err := verify(v, payload(t, "eks", tok)); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if hits != 2 {
		t.Fatalf("JWKS fetched %d times, want 2", hits)
	}

	// A JWKS server whose certificate is not from the configured CA.
	conf.Clusters[0].JWKSCAFile = ""
	v2, err := k8spsat.NewVerifier(conf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verify(v2, payload(t, "eks", tok)); err == nil || !strings.Contains(err.Error(), "unavailable") {
		t.Fatalf("untrusted JWKS server: %v", err)
	}
}
