package k8spsat_test

import (
	"context"
	"crypto"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2/hclsimple"

	"github.com/hallmarkid/hallmark/attestors"
	"github.com/hallmarkid/hallmark/attestors/k8spsat"
	"github.com/hallmarkid/hallmark/attestors/k8spsat/tokenreview"
)

func TestNewVerifierConfig(t *testing.T) {
	testKeys(t)
	jwks := writeFile(t, "jwks.json", jwksJSON(t, map[string]crypto.Signer{"ec1": ecKey}))
	symOnly := writeFile(t, "sym.json", []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"s"}]}`))
	ok := func(mod func(*k8spsat.ClusterConfig)) []k8spsat.ClusterConfig {
		c := k8spsat.ClusterConfig{Name: "c", ServiceAccountAllowList: []string{"ns:sa"}, JWKSFile: jwks, Issuer: issuer}
		mod(&c)
		return []k8spsat.ClusterConfig{c}
	}
	tests := []struct {
		name     string
		clusters []k8spsat.ClusterConfig
		wantErr  string
	}{
		{name: "valid", clusters: ok(func(*k8spsat.ClusterConfig) {})},
		{name: "no clusters", wantErr: "no cluster"},
		{name: "bad name", clusters: ok(func(c *k8spsat.ClusterConfig) { c.Name = "a/b" }), wantErr: "cluster name"},
		{name: "dot name", clusters: ok(func(c *k8spsat.ClusterConfig) { c.Name = ".." }), wantErr: "cluster name"},
		{name: "empty allow list", clusters: ok(func(c *k8spsat.ClusterConfig) { c.ServiceAccountAllowList = nil }), wantErr: "allow_list is empty"},
		{name: "bad allow list entry", clusters: ok(func(c *k8spsat.ClusterConfig) { c.ServiceAccountAllowList = []string{"sa"} }), wantErr: "namespace:name"},
		{name: "two modes", clusters: ok(func(c *k8spsat.ClusterConfig) { c.InCluster = true }), wantErr: "exactly one"},
		{name: "no mode", clusters: ok(func(c *k8spsat.ClusterConfig) { c.JWKSFile = "" }), wantErr: "exactly one"},
		{name: "offline without issuer", clusters: ok(func(c *k8spsat.ClusterConfig) { c.Issuer = "" }), wantErr: "issuer is required"},
		{name: "jwks over http", clusters: ok(func(c *k8spsat.ClusterConfig) { c.JWKSFile, c.JWKSURL = "", "http://x/keys" }), wantErr: "https"},
		{name: "jwks file missing", clusters: ok(func(c *k8spsat.ClusterConfig) { c.JWKSFile = "/nonexistent" }), wantErr: "issuer keys"},
		{name: "jwks of symmetric keys only", clusters: ok(func(c *k8spsat.ClusterConfig) { c.JWKSFile = symOnly }), wantErr: "no public signing key"},
		{name: "bad refresh", clusters: ok(func(c *k8spsat.ClusterConfig) { c.JWKSRefreshInterval = "0s" }), wantErr: "jwks_refresh_interval"},
		{name: "empty audience", clusters: ok(func(c *k8spsat.ClusterConfig) { c.Audience = []string{""} }), wantErr: "empty audience"},
		{name: "missing kubeconfig", clusters: ok(func(c *k8spsat.ClusterConfig) { c.JWKSFile, c.KubeConfigFile = "", "/nonexistent" }), wantErr: "kubeconfig"},
		{name: "duplicate cluster", clusters: append(ok(func(*k8spsat.ClusterConfig) {}), ok(func(*k8spsat.ClusterConfig) {})...), wantErr: "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := k8spsat.NewVerifier(k8spsat.ServerConfig{Clusters: tt.clusters}, k8spsat.WithTokenReviewers(tokenreview.ForCluster))
			if tt.wantErr == "" {
				if err != nil || v.Type() != "k8s_psat" {
					t.Fatalf("NewVerifier: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// The config structs decode strictly from HCL as the wiring will do it.
func TestHCLDecode(t *testing.T) {
	src := `
cluster "prod-eu" {
  service_account_allow_list = ["hallmark:agent"]
  jwks_url = "https://oidc.example.test/keys"
  issuer   = "https://oidc.example.test"
}
cluster "dev" {
  service_account_allow_list = ["hallmark:agent"]
  audience = ["hallmark-dev"]
  kube_config_file = "/etc/hallmark/dev.kubeconfig"
}
`
	var sc k8spsat.ServerConfig
	if err := hclsimple.Decode("server.hcl", []byte(src), nil, &sc); err != nil {
		t.Fatal(err)
	}
	if len(sc.Clusters) != 2 || sc.Clusters[0].Name != "prod-eu" || sc.Clusters[1].Audience[0] != "hallmark-dev" {
		t.Fatalf("decoded %+v", sc)
	}
	bad := `cluster "x" {
  service_account_allow_list = ["a:b"]
  jwks_uri = "https://typo"
}`
	if err := hclsimple.Decode("server.hcl", []byte(bad), nil, &sc); err == nil || !strings.Contains(err.Error(), "jwks_uri") {
		t.Fatalf("unknown key accepted: %v", err)
	}
	var ac k8spsat.AgentConfig
	if err := hclsimple.Decode("agent.hcl", []byte(`cluster = "prod-eu"`), nil, &ac); err != nil || ac.Cluster != "prod-eu" {
		t.Fatalf("agent config: %+v %v", ac, err)
	}
}

func TestCollectorRoundTrip(t *testing.T) {
	testKeys(t)
	tok := mint(t, ecKey, "ES256", "ec1", claims())
	c, err := k8spsat.NewCollector(k8spsat.AgentConfig{Cluster: "prod-eu", TokenPath: writeFile(t, "token", []byte(tok+"\n"))})
	if err != nil {
		t.Fatal(err)
	}
	if c.Type() != "k8s_psat" {
		t.Fatalf("Type = %q", c.Type())
	}
	p, err := c.Payload(context.Background(), attestors.CollectRequest{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := verify(offlineVerifier(t, func() time.Time { return t0 }), p)
	if err != nil || res.AgentID.String() != "spiffe://example.org/agent/k8s_psat/prod-eu/"+nodeUID {
		t.Fatalf("Verify = %v, %v", res.AgentID, err)
	}
	if _, err := c.Answer(context.Background(), []byte("x")); err == nil {
		t.Fatal("Answer accepted a challenge")
	}

	tests := []struct {
		name    string
		conf    k8spsat.AgentConfig
		wantErr string
	}{
		{name: "no cluster", conf: k8spsat.AgentConfig{}, wantErr: "cluster name"},
		{name: "missing token", conf: k8spsat.AgentConfig{Cluster: "c", TokenPath: "/nonexistent"}, wantErr: "read token"},
		{name: "empty token", conf: k8spsat.AgentConfig{Cluster: "c", TokenPath: writeFile(t, "empty", []byte("\n"))}, wantErr: "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := k8spsat.NewCollector(tt.conf)
			if err == nil {
				_, err = c.Payload(context.Background(), attestors.CollectRequest{})
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
