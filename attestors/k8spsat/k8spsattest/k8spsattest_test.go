package k8spsattest_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	authv1 "k8s.io/api/authentication/v1"

	"github.com/hallmarkid/hallmark/attestors"
	"github.com/hallmarkid/hallmark/attestors/k8spsat"
	"github.com/hallmarkid/hallmark/attestors/k8spsat/k8spsattest"
	"github.com/hallmarkid/hallmark/attestors/k8spsat/tokenreview"
)

var pod = k8spsattest.Pod{Namespace: "hallmark", ServiceAccount: "agent", Name: "agent-abcde",
	UID: "0f0e0d0c-1111-4222-8333-444455556666", NodeName: "node-1", NodeUID: "aaaabbbb-cccc-4ddd-8eee-ffff00001111"}

// The helpers produce what the real verifier accepts, and nothing more:
// offline against the issuer's JWKS, and through the TokenReview client
// against the API server.
func TestHelpersAgainstTheVerifier(t *testing.T) {
	iss := k8spsattest.NewIssuer(t)
	const reviewed = "reviewed-token"
	api := k8spsattest.StartAPIServer(t, map[string]authv1.TokenReviewStatus{reviewed: k8spsattest.Review(pod)})
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, iss.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	allow := []string{"hallmark:agent"}
	v, err := k8spsat.NewVerifier(k8spsat.ServerConfig{Clusters: []k8spsat.ClusterConfig{
		{Name: "offline", ServiceAccountAllowList: allow, JWKSURL: iss.JWKSURL, JWKSCAFile: ca, Issuer: iss.Name},
		{Name: "review", ServiceAccountAllowList: allow, KubeConfigFile: k8spsattest.Kubeconfig(t, api)},
	}}, k8spsat.WithTokenReviewers(tokenreview.ForCluster))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, cluster, token string
		wantErr              string
	}{
		{name: "issuer token", cluster: "offline", token: iss.Token(t, pod, []string{k8spsattest.DefaultAudience}, time.Hour)},
		{name: "issuer token for another audience", cluster: "offline", token: iss.Token(t, pod, []string{"vault"}, time.Hour), wantErr: "audience"},
		{name: "expired issuer token", cluster: "offline", token: iss.Token(t, pod, []string{k8spsattest.DefaultAudience}, -time.Hour), wantErr: "expired"},
		{name: "reviewed token", cluster: "review", token: reviewed},
		{name: "unknown token", cluster: "review", token: "unknown", wantErr: "invalid bearer token"},
	}
	td := spiffeid.RequireTrustDomainFromString("example.org")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := json.Marshal(k8spsat.Payload{Cluster: tc.cluster, Token: tc.token})
			if err != nil {
				t.Fatal(err)
			}
			res, err := v.Verify(context.Background(), attestors.VerifyRequest{Payload: p, TrustDomain: td})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := "spiffe://example.org/agent/k8s_psat/" + tc.cluster + "/" + pod.NodeUID; res.AgentID.String() != want {
				t.Fatalf("agent ID %s, want %s", res.AgentID, want)
			}
		})
	}
	if iss.Fetches() == 0 || api.Calls() == 0 {
		t.Fatalf("JWKS fetches %d, API calls %d", iss.Fetches(), api.Calls())
	}
}
