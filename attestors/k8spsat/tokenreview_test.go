package k8spsat_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	authv1 "k8s.io/api/authentication/v1"

	"github.com/hallmarkid/hallmark/attestors/k8spsat"
	"github.com/hallmarkid/hallmark/attestors/k8spsat/internal/fakeapi"
	"github.com/hallmarkid/hallmark/attestors/k8spsat/tokenreview"
)

// TestVerifyTokenReview runs the verifier's TokenReview mode end to end:
// the tokenreview client against a strict loopback API server.
func TestVerifyTokenReview(t *testing.T) {
	testKeys(t)
	full := map[string]authv1.ExtraValue{
		"authentication.kubernetes.io/pod-name":  {"hallmark-agent-x7k2p"},
		"authentication.kubernetes.io/pod-uid":   {podUID},
		"authentication.kubernetes.io/node-name": {"node-1"},
		"authentication.kubernetes.io/node-uid":  {nodeUID},
	}
	podOnly := map[string]authv1.ExtraValue{
		"authentication.kubernetes.io/pod-name": {"hallmark-agent-x7k2p"},
		"authentication.kubernetes.io/pod-uid":  {podUID},
	}
	wrongIss := mint(t, ecKey, jose.ES256, "ec1", func() map[string]any { c := claims(); c["iss"] = "https://other"; return c }())
	api := fakeapi.Start(t, map[string]authv1.TokenReviewStatus{
		"good":        fakeapi.SAStatus("hallmark", "agent", full),
		"pod-only":    fakeapi.SAStatus("hallmark", "agent", podOnly),
		"other-aud":   fakeapi.SAStatus("hallmark", "agent", full, "https://kubernetes.default.svc"),
		"no-aud":      {Authenticated: true, User: authv1.UserInfo{Username: "system:serviceaccount:hallmark:agent", Extra: full}},
		"not-allowed": fakeapi.SAStatus("default", "default", full),
		"legacy":      fakeapi.SAStatus("hallmark", "agent", nil),
		"user":        {Authenticated: true, Audiences: []string{fakeapi.DefaultAudience}, User: authv1.UserInfo{Username: "alice"}},
		"two-pods":    fakeapi.SAStatus("hallmark", "agent", map[string]authv1.ExtraValue{"authentication.kubernetes.io/pod-uid": {"a", "b"}}),
		"with-error":  {Authenticated: true, Error: "webhook broke"},
		"unauth":      {Authenticated: false},
		wrongIss:      fakeapi.SAStatus("hallmark", "agent", full),
	})
	kc := api.Kubeconfig(t, "    token: "+fakeapi.AdminToken)

	tests := []struct {
		name    string
		token   string
		issuer  string
		wantID  string
		wantErr string
	}{
		{name: "node UID", token: "good", wantID: "spiffe://example.org/agent/k8s_psat/prod/" + nodeUID},
		{name: "pod UID before k8s 1.30", token: "pod-only", wantID: "spiffe://example.org/agent/k8s_psat/prod/" + podUID},
		{name: "unknown token", token: "nope", wantErr: "invalid bearer token"},
		{name: "not authenticated", token: "unauth", wantErr: "not authenticated"},
		{name: "review error", token: "with-error", wantErr: "webhook broke"},
		{name: "audience not ours", token: "other-aud", wantErr: "audiences"},
		{name: "api server not audience aware", token: "no-aud", wantErr: "audiences"},
		{name: "service account not allowed", token: "not-allowed", wantErr: "not allowed"},
		{name: "legacy secret token", token: "legacy", wantErr: "not bound to a pod"},
		{name: "not a service account", token: "user", wantErr: "not a service account"},
		{name: "ambiguous extra", token: "two-pods", wantErr: "2 values"},
		{name: "issuer checked when configured", token: wrongIss, issuer: issuer, wantErr: "issuer"},
		{name: "issuer on a non-JWT", token: "good", issuer: issuer, wantErr: "not a JWT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := k8spsat.NewVerifier(k8spsat.ServerConfig{Clusters: []k8spsat.ClusterConfig{{
				Name: "prod", ServiceAccountAllowList: []string{"hallmark:agent"}, KubeConfigFile: kc, Issuer: tt.issuer,
			}}}, k8spsat.WithTokenReviewers(tokenreview.ForCluster))
			if err != nil {
				t.Fatal(err)
			}
			res, err := verify(v, payload(t, "prod", tt.token))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if res.AgentID.String() != tt.wantID || !res.CanReattest {
				t.Fatalf("got %s, want %s", res.AgentID, tt.wantID)
			}
			var got []string
			for _, s := range res.Selectors {
				got = append(got, s.String())
			}
			for _, w := range []string{"k8s_psat:cluster:prod", "k8s_psat:agent_ns:hallmark", "k8s_psat:agent_sa:agent",
				"k8s_psat:agent_pod_name:hallmark-agent-x7k2p", "k8s_psat:agent_pod_uid:" + podUID} {
				if !slices.Contains(got, w) {
					t.Errorf("missing %q in %v", w, got)
				}
			}
		})
	}
}

// reviewerFunc adapts a function to k8spsat.TokenReviewer.
type reviewerFunc func(ctx context.Context, token string, audiences []string) (k8spsat.Review, error)

func (f reviewerFunc) Review(ctx context.Context, token string, audiences []string) (k8spsat.Review, error) {
	return f(ctx, token, audiences)
}

func TestTokenReviewerWiring(t *testing.T) {
	conf := k8spsat.ServerConfig{Clusters: []k8spsat.ClusterConfig{{
		Name: "prod", ServiceAccountAllowList: []string{"hallmark:agent"}, InCluster: true, Audience: []string{"a", "b"},
	}}}
	tests := []struct {
		name    string
		opts    []k8spsat.Option
		wantErr string
	}{
		{name: "no TokenReview client", wantErr: "WithTokenReviewers"},
		{name: "factory fails", opts: []k8spsat.Option{k8spsat.WithTokenReviewers(func(k8spsat.ClusterConfig) (k8spsat.TokenReviewer, error) {
			return nil, errors.New("no kubeconfig today")
		})}, wantErr: `cluster "prod": no kubeconfig today`},
		{name: "factory returns nil", opts: []k8spsat.Option{k8spsat.WithTokenReviewers(func(k8spsat.ClusterConfig) (k8spsat.TokenReviewer, error) {
			return nil, nil
		})}, wantErr: "no TokenReview client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := k8spsat.NewVerifier(conf, tt.opts...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}

	// The factory sees the cluster's block; the reviewer is asked for the
	// cluster's audiences, and its errors reject the agent.
	var gotConf k8spsat.ClusterConfig
	var gotAud []string
	v, err := k8spsat.NewVerifier(conf, k8spsat.WithTokenReviewers(func(c k8spsat.ClusterConfig) (k8spsat.TokenReviewer, error) {
		gotConf = c
		return reviewerFunc(func(ctx context.Context, token string, aud []string) (k8spsat.Review, error) {
			if _, ok := ctx.Deadline(); !ok {
				t.Error("review without a deadline")
			}
			gotAud = aud
			return k8spsat.Review{}, errors.New("tokenreview: connection refused")
		}), nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	if gotConf.Name != "prod" || !gotConf.InCluster {
		t.Fatalf("factory got %+v", gotConf)
	}
	if _, err := verify(v, payload(t, "prod", "tok")); err == nil || !strings.Contains(err.Error(), `cluster "prod": tokenreview: connection refused`) {
		t.Fatalf("err = %v", err)
	}
	if !slices.Equal(gotAud, []string{"a", "b"}) {
		t.Fatalf("audiences %q", gotAud)
	}
}
