package k8spsat_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	authv1 "k8s.io/api/authentication/v1"

	"github.com/hallmarkid/hallmark/attestors/k8spsat"
)

const adminToken = "api-server-credential"

// fakeAPIServer is a loopback TokenReview endpoint that is strict about
// method, path, headers and body, and answers from a table of tokens.
type fakeAPIServer struct {
	*httptest.Server
	reviews map[string]authv1.TokenReviewStatus
	calls   int
}

func startAPIServer(t *testing.T, reviews map[string]authv1.TokenReviewStatus) *fakeAPIServer {
	f := &fakeAPIServer{reviews: reviews}
	f.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.calls++
		fail := func(code int, msg string) {
			t.Logf("fake API server: %d %s", code, msg)
			http.Error(w, msg, code)
		}
		switch {
		case r.Header.Get("Authorization") != "Bearer "+adminToken:
			fail(http.StatusUnauthorized, "Unauthorized")
			return
		case r.URL.Path != "/apis/authentication.k8s.io/v1/tokenreviews" || r.URL.RawQuery != "":
			fail(http.StatusNotFound, "not found")
			return
		case r.Method != http.MethodPost:
			fail(http.StatusMethodNotAllowed, "method")
			return
		case r.Header.Get("Content-Type") != "application/json":
			fail(http.StatusUnsupportedMediaType, "content type")
			return
		}
		body, _ := io.ReadAll(r.Body)
		var tr authv1.TokenReview
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&tr); err != nil || tr.Kind != "TokenReview" || tr.APIVersion != "authentication.k8s.io/v1" {
			fail(http.StatusBadRequest, fmt.Sprintf("bad body %s: %v", body, err))
			return
		}
		if !slices.Equal(tr.Spec.Audiences, []string{"hallmark-server"}) {
			fail(http.StatusBadRequest, fmt.Sprintf("audiences %q", tr.Spec.Audiences))
			return
		}
		st, ok := f.reviews[tr.Spec.Token]
		if !ok {
			st = authv1.TokenReviewStatus{Authenticated: false, Error: "invalid bearer token"}
		}
		tr.Status = st
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(&tr)
	}))
	t.Cleanup(f.Close)
	return f
}

func kubeconfigFor(t *testing.T, srv *httptest.Server, userBlock string) string {
	ca := base64.StdEncoding.EncodeToString(serverCA(srv))
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
current-context: admin@test
clusters:
- name: test
  cluster:
    server: %s
    certificate-authority-data: %s
contexts:
- name: admin@test
  context:
    cluster: test
    user: admin
users:
- name: admin
  user:
%s
`, srv.URL, ca, userBlock)
	return writeFile(t, "kubeconfig", []byte(kc))
}

func saStatus(ns, sa string, extra map[string]authv1.ExtraValue, aud ...string) authv1.TokenReviewStatus {
	if aud == nil {
		aud = []string{"hallmark-server"}
	}
	return authv1.TokenReviewStatus{
		Authenticated: true,
		Audiences:     aud,
		User:          authv1.UserInfo{Username: "system:serviceaccount:" + ns + ":" + sa, Extra: extra},
	}
}

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
	api := startAPIServer(t, map[string]authv1.TokenReviewStatus{
		"good":        saStatus("hallmark", "agent", full),
		"pod-only":    saStatus("hallmark", "agent", podOnly),
		"other-aud":   saStatus("hallmark", "agent", full, "https://kubernetes.default.svc"),
		"no-aud":      {Authenticated: true, User: authv1.UserInfo{Username: "system:serviceaccount:hallmark:agent", Extra: full}},
		"not-allowed": saStatus("default", "default", full),
		"legacy":      saStatus("hallmark", "agent", nil),
		"user":        {Authenticated: true, Audiences: []string{"hallmark-server"}, User: authv1.UserInfo{Username: "alice"}},
		"two-pods":    saStatus("hallmark", "agent", map[string]authv1.ExtraValue{"authentication.kubernetes.io/pod-uid": {"a", "b"}}),
		"with-error":  {Authenticated: true, Error: "webhook broke"},
		"unauth":      {Authenticated: false},
		wrongIss:      saStatus("hallmark", "agent", full),
	})
	kc := kubeconfigFor(t, api.Server, "    token: "+adminToken)

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
			}}})
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

func TestTokenReviewCredentials(t *testing.T) {
	api := startAPIServer(t, map[string]authv1.TokenReviewStatus{"good": saStatus("hallmark", "agent", map[string]authv1.ExtraValue{
		"authentication.kubernetes.io/pod-name": {"p"}, "authentication.kubernetes.io/pod-uid": {podUID},
	})})
	tokFile := writeFile(t, "admin-token", []byte(adminToken+"\n"))
	tests := []struct {
		name    string
		user    string
		wantErr string
	}{
		{name: "token file", user: "    tokenFile: " + tokFile},
		{name: "wrong credential", user: "    token: wrong", wantErr: "401 Unauthorized"},
		{name: "missing token file", user: "    tokenFile: /nonexistent/token", wantErr: "API token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := k8spsat.NewVerifier(k8spsat.ServerConfig{Clusters: []k8spsat.ClusterConfig{{
				Name: "prod", ServiceAccountAllowList: []string{"hallmark:agent"}, KubeConfigFile: kubeconfigFor(t, api.Server, tt.user),
			}}})
			if err != nil {
				t.Fatal(err)
			}
			_, err = verify(v, payload(t, "prod", "good"))
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestTokenReviewUntrustedServer(t *testing.T) {
	api := startAPIServer(t, nil)
	// Same server, but the kubeconfig names a CA that did not sign it.
	kc := kubeconfigFor(t, api.Server, "    token: "+adminToken)
	kc = writeFile(t, "kc2", []byte(strings.Replace(string(mustRead(t, kc)), base64.StdEncoding.EncodeToString(serverCA(api.Server)),
		base64.StdEncoding.EncodeToString(otherCAPEM(t)), 1)))
	v, err := k8spsat.NewVerifier(k8spsat.ServerConfig{Clusters: []k8spsat.ClusterConfig{{
		Name: "prod", ServiceAccountAllowList: []string{"hallmark:agent"}, KubeConfigFile: kc,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verify(v, payload(t, "prod", "good")); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("err = %v", err)
	}
	if api.calls != 0 {
		t.Fatal("token sent to an unverified server")
	}
}
