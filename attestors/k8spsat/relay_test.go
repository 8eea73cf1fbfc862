package k8spsat_test

import (
	"context"
	"crypto"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/attestors"
	"github.com/hallmarkid/hallmark/attestors/k8spsat"
)

// defaultAud is the audience a deployment of td projects into its agents'
// tokens when it keeps the defaults.
func defaultAud(td spiffeid.TrustDomain) string { return k8spsat.DefaultAudience(td) }

// TestRelayAcrossTrustDomains presents to the server of trust domain A a
// token projected for an agent of trust domain B (which B's server, or
// anyone B's agent hands its token to, can replay). With default settings
// on both sides, A must refuse it: the default audience names the trust
// domain. An explicit audience list (SPIRE's "audience" key) replaces the
// default on the server.
func TestRelayAcrossTrustDomains(t *testing.T) {
	testKeys(t)
	tdA := spiffeid.RequireTrustDomainFromString("a.example")
	tdB := spiffeid.RequireTrustDomainFromString("b.example")
	jwks := writeFile(t, "jwks.json", jwksJSON(t, map[string]crypto.Signer{"ec1": ecKey}))
	token := func(aud ...string) string {
		c := claims()
		c["aud"] = aud
		return mint(t, ecKey, jose.ES256, "ec1", c)
	}
	tests := []struct {
		name     string
		audience []string // server's audience setting
		token    string
		wantErr  string
	}{
		{name: "token for B relayed to A", token: token(defaultAud(tdB)), wantErr: "audience"},
		{name: "token for A", token: token(defaultAud(tdA))},
		{name: "token for A and others", token: token("vault", defaultAud(tdA))},
		{name: "old default audience", token: token("hallmark-server"), wantErr: "audience"},
		{name: "explicit audience (SPIRE's spire-server)", audience: []string{"spire-server"}, token: token("spire-server")},
		{name: "explicit audience replaces the default", audience: []string{"spire-server"}, token: token(defaultAud(tdA)), wantErr: "audience"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := k8spsat.NewVerifier(k8spsat.ServerConfig{
				Now: func() time.Time { return t0 },
				Clusters: []k8spsat.ClusterConfig{{
					Name: "prod-eu", ServiceAccountAllowList: []string{"hallmark:agent"},
					JWKSFile: jwks, Issuer: issuer, Audience: tc.audience,
				}},
			})
			if err != nil {
				t.Fatal(err)
			}
			res, err := v.Verify(context.Background(), attestors.VerifyRequest{Payload: payload(t, "prod-eu", tc.token), TrustDomain: tdA})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.AgentID.TrustDomain() != tdA {
				t.Errorf("agent ID %s", res.AgentID)
			}
		})
	}
}

// TestRelayAcrossTrustDomainsTokenReview does the same through the
// TokenReview API: the server asks the API server to check the token for
// its own audience, and the API server (modelled here as a real one does:
// the review's audiences are those requested that the token carries)
// refuses B's token.
func TestRelayAcrossTrustDomainsTokenReview(t *testing.T) {
	tdA := spiffeid.RequireTrustDomainFromString("a.example")
	tdB := spiffeid.RequireTrustDomainFromString("b.example")
	tokens := map[string][]string{
		"for-b": {defaultAud(tdB)},
		"for-a": {defaultAud(tdA)},
		"spire": {"spire-server"},
	}
	tests := []struct {
		name     string
		audience []string
		token    string
		wantErr  string
	}{
		{name: "token for B relayed to A", token: "for-b", wantErr: "not authenticated"},
		{name: "token for A", token: "for-a"},
		{name: "explicit audience", audience: []string{"spire-server"}, token: "spire"},
		{name: "explicit audience replaces the default", audience: []string{"spire-server"}, token: "for-a", wantErr: "not authenticated"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var asked []string
			v, err := k8spsat.NewVerifier(k8spsat.ServerConfig{Clusters: []k8spsat.ClusterConfig{{
				Name: "prod", ServiceAccountAllowList: []string{"hallmark:agent"}, InCluster: true, Audience: tc.audience,
			}}}, k8spsat.WithTokenReviewers(func(k8spsat.ClusterConfig) (k8spsat.TokenReviewer, error) {
				return reviewerFunc(func(_ context.Context, token string, aud []string) (k8spsat.Review, error) {
					asked = aud
					var ok []string
					for _, a := range aud {
						if slices.Contains(tokens[token], a) {
							ok = append(ok, a)
						}
					}
					if len(ok) == 0 {
						return k8spsat.Review{}, nil
					}
					return k8spsat.Review{
						Authenticated: true, Audiences: ok, Username: "system:serviceaccount:hallmark:agent",
						Extra: map[string][]string{
							"authentication.kubernetes.io/pod-name": {"hallmark-agent-x7k2p"},
							"authentication.kubernetes.io/pod-uid":  {podUID},
						},
					}, nil
				}), nil
			}))
			if err != nil {
				t.Fatal(err)
			}
			_, err = v.Verify(context.Background(), attestors.VerifyRequest{Payload: payload(t, "prod", tc.token), TrustDomain: tdA})
			want := tc.audience
			if want == nil {
				want = []string{defaultAud(tdA)}
			}
			if !slices.Equal(asked, want) {
				t.Errorf("the API server was asked for audiences %q, want %q", asked, want)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}
