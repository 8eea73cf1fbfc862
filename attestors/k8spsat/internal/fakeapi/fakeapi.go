// Package fakeapi is a loopback Kubernetes API server for tests of
// k8spsat and k8spsat/tokenreview: a TokenReview endpoint over TLS that is
// strict about method, path, query, headers, credentials and body, and
// answers from a table of tokens.
//
// It is imported by tests only; it must not be imported by production code.
package fakeapi

import (
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	authv1 "k8s.io/api/authentication/v1"
)

// AdminToken is the bearer credential the server accepts.
const AdminToken = "api-server-credential"

// DefaultAudience is the audience of the tokens in the tests' tables unless
// they say otherwise: the default audience of a hallmark server of the
// trust domain example.org (k8spsat.DefaultAudience).
const DefaultAudience = "spiffe://example.org/hallmark/server"

// Path is the TokenReview endpoint.
const Path = "/apis/authentication.k8s.io/v1/tokenreviews"

// Server is a running fake API server.
type Server struct {
	*httptest.Server
	reviews map[string]authv1.TokenReviewStatus
	calls   atomic.Int64
}

// Start serves reviews until the test ends: a TokenReview of a token in
// the table gets that status, any other token "invalid bearer token". The
// request must name audiences; as a real API server does, the review's
// audiences are those requested that the token (its status's Audiences)
// carries, and a token carrying none of them is not authenticated. A
// status without Audiences models an API server that is not
// audience-aware and is returned as it is.
func Start(t testing.TB, reviews map[string]authv1.TokenReviewStatus) *Server {
	t.Helper()
	s := &Server{reviews: reviews}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.calls.Add(1)
		fail := func(code int, msg string) {
			t.Logf("fake API server: %d %s", code, msg)
			http.Error(w, msg, code)
		}
		switch {
		case r.Header.Get("Authorization") != "Bearer "+AdminToken:
			fail(http.StatusUnauthorized, "Unauthorized")
			return
		case r.URL.Path != Path || r.URL.RawQuery != "":
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
		if len(tr.Spec.Audiences) == 0 {
			fail(http.StatusBadRequest, "no audiences requested")
			return
		}
		st, ok := s.reviews[tr.Spec.Token]
		if !ok {
			st = authv1.TokenReviewStatus{Authenticated: false, Error: "invalid bearer token"}
		}
		if st.Authenticated && st.Audiences != nil {
			var both []string
			for _, a := range tr.Spec.Audiences {
				if slices.Contains(st.Audiences, a) {
					both = append(both, a)
				}
			}
			if both == nil {
				st = authv1.TokenReviewStatus{Error: fmt.Sprintf("[invalid bearer token, token audiences %q is invalid for the target audiences %q]", st.Audiences, tr.Spec.Audiences)}
			} else {
				st.Audiences = both
			}
		}
		tr.Status = st
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(&tr)
	}))
	t.Cleanup(s.Close)
	return s
}

// Calls returns how many requests reached the server.
func (s *Server) Calls() int { return int(s.calls.Load()) }

// CAPEM returns the PEM of srv's self-signed certificate.
func CAPEM(srv *httptest.Server) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
}

// Kubeconfig writes a kubeconfig naming the server (context admin@test,
// cluster test, user admin) with the user block userBlock, indented by
// four spaces (e.g. "    token: "+AdminToken), and returns its path.
func (s *Server) Kubeconfig(t testing.TB, userBlock string) string {
	t.Helper()
	return Kubeconfig(t, s.Server, userBlock)
}

// Kubeconfig writes a kubeconfig naming srv, trusting its certificate;
// see [Server.Kubeconfig].
func Kubeconfig(t testing.TB, srv *httptest.Server, userBlock string) string {
	t.Helper()
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
`, srv.URL, base64.StdEncoding.EncodeToString(CAPEM(srv)), userBlock)
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(p, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// SAStatus is an authenticated review of service account ns:sa with the
// given extra fields, valid for aud (default [DefaultAudience]).
func SAStatus(ns, sa string, extra map[string]authv1.ExtraValue, aud ...string) authv1.TokenReviewStatus {
	if aud == nil {
		aud = []string{DefaultAudience}
	}
	return authv1.TokenReviewStatus{
		Authenticated: true,
		Audiences:     aud,
		User:          authv1.UserInfo{Username: "system:serviceaccount:" + ns + ":" + sa, Extra: extra},
	}
}
