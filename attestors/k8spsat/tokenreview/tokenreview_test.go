package tokenreview_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"

	"github.com/hallmarkid/hallmark/attestors/k8spsat"
	"github.com/hallmarkid/hallmark/attestors/k8spsat/internal/fakeapi"
	"github.com/hallmarkid/hallmark/attestors/k8spsat/tokenreview"
)

var aud = []string{fakeapi.DefaultAudience}

func newClient(t *testing.T, kubeconfig string) *tokenreview.Client {
	t.Helper()
	c, err := tokenreview.New(tokenreview.Config{KubeConfigFile: kubeconfig})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Every field of the API server's status reaches the Review.
func TestReviewFields(t *testing.T) {
	api := fakeapi.Start(t, map[string]authv1.TokenReviewStatus{
		"good": {
			Authenticated: true,
			Audiences:     aud,
			User: authv1.UserInfo{
				Username: "system:serviceaccount:hallmark:agent",
				UID:      "5a5a5a5a-0000-4000-8000-000000000000",
				Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:hallmark"},
				Extra: map[string]authv1.ExtraValue{
					"authentication.kubernetes.io/pod-uid":       {"0f0e"},
					"authentication.kubernetes.io/credential-id": {"JTI=1"},
				},
			},
		},
	})
	c := newClient(t, api.Kubeconfig(t, "    token: "+fakeapi.AdminToken))
	got, err := c.Review(context.Background(), "good", aud)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Authenticated || got.Username != "system:serviceaccount:hallmark:agent" || got.UID != "5a5a5a5a-0000-4000-8000-000000000000" ||
		!slices.Equal(got.Groups, []string{"system:serviceaccounts", "system:serviceaccounts:hallmark"}) ||
		!slices.Equal(got.Audiences, aud) || got.Error != "" ||
		!slices.Equal(got.Extra["authentication.kubernetes.io/pod-uid"], []string{"0f0e"}) ||
		!slices.Equal(got.Extra["authentication.kubernetes.io/credential-id"], []string{"JTI=1"}) || len(got.Extra) != 2 {
		t.Fatalf("Review = %+v", got)
	}

	// A token the API server rejects is a review, not an error.
	got, err = c.Review(context.Background(), "unknown", aud)
	if err != nil || got.Authenticated || got.Error != "invalid bearer token" {
		t.Fatalf("Review = %+v, %v", got, err)
	}
	// A token reviewed for audiences it does not carry is not
	// authenticated, as a real API server answers.
	got, err = c.Review(context.Background(), "good", []string{"other"})
	if err != nil || got.Authenticated || !strings.Contains(got.Error, "invalid for the target audiences") {
		t.Fatalf("Review for another audience = %+v, %v", got, err)
	}
	// A review must name audiences: without, the fake answers 400.
	if _, err := c.Review(context.Background(), "good", nil); err == nil || !strings.Contains(err.Error(), "400 Bad Request") {
		t.Fatalf("err = %v", err)
	}
}

func TestCredentials(t *testing.T) {
	api := fakeapi.Start(t, map[string]authv1.TokenReviewStatus{"good": fakeapi.SAStatus("hallmark", "agent", nil)})
	tokFile := writeFile(t, "admin-token", []byte(fakeapi.AdminToken+"\n"))
	tests := []struct {
		name    string
		user    string
		wantErr string
	}{
		{name: "token", user: "    token: " + fakeapi.AdminToken},
		{name: "token file", user: "    tokenFile: " + tokFile},
		{name: "token file relative to the kubeconfig", user: "    tokenFile: admin-token"},
		{name: "wrong credential", user: "    token: wrong", wantErr: "401 Unauthorized"},
		{name: "missing token file", user: "    tokenFile: /nonexistent/token", wantErr: "API token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kc := api.Kubeconfig(t, tt.user)
			if err := os.WriteFile(filepath.Join(filepath.Dir(kc), "admin-token"), []byte(fakeapi.AdminToken), 0o600); err != nil {
				t.Fatal(err)
			}
			r, err := newClient(t, kc).Review(context.Background(), "good", aud)
			if tt.wantErr == "" {
				if err != nil || !r.Authenticated {
					t.Fatalf("Review = %+v, %v", r, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// A kubeconfig with a client certificate authenticates with it over TLS.
func TestClientCertificate(t *testing.T) {
	caKey, caCert, caPEM := newCA(t, "client CA")
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "hallmark-server", Organization: []string{"hallmark"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(leafKey)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 || r.TLS.PeerCertificates[0].Subject.CommonName != "hallmark-server" ||
			r.Header.Get("Authorization") != "" || r.URL.Path != fakeapi.Path {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","status":{"authenticated":true,"user":{"username":"system:serviceaccount:a:b"}}}`))
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	dir := t.TempDir()
	for name, data := range map[string][]byte{"client.crt": certPEM, "client.key": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		user    string
		wantErr string
	}{
		{name: "inline", user: "    client-certificate-data: " + base64.StdEncoding.EncodeToString(certPEM) +
			"\n    client-key-data: " + base64.StdEncoding.EncodeToString(keyPEM)},
		{name: "files", user: "    client-certificate: " + filepath.Join(dir, "client.crt") + "\n    client-key: " + filepath.Join(dir, "client.key")},
		{name: "key of another certificate", user: "    client-certificate-data: " + base64.StdEncoding.EncodeToString(certPEM) +
			"\n    client-key-data: " + base64.StdEncoding.EncodeToString(otherKeyPEM(t)), wantErr: "client certificate"},
		{name: "missing key file", user: "    client-certificate: " + filepath.Join(dir, "client.crt") + "\n    client-key: " + filepath.Join(dir, "nope.key"),
			wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tokenreview.New(tokenreview.Config{KubeConfigFile: fakeapi.Kubeconfig(t, srv, tt.user)})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			r, err := c.Review(context.Background(), "tok", aud)
			if err != nil || !r.Authenticated || r.Username != "system:serviceaccount:a:b" {
				t.Fatalf("Review = %+v, %v", r, err)
			}
		})
	}
}

func TestKubeconfigErrors(t *testing.T) {
	api := fakeapi.Start(t, nil)
	good := string(mustRead(t, api.Kubeconfig(t, "    token: x")))
	tests := []struct {
		name, from, to, wantErr string
	}{
		{name: "exec plugin", from: "    token: x", to: "    exec:\n      command: aws", wantErr: "not supported"},
		{name: "auth provider", from: "    token: x", to: "    auth-provider:\n      name: gcp", wantErr: "not supported"},
		{name: "insecure", from: "    certificate-authority-data:", to: "    insecure-skip-tls-verify: true\n    x-certificate-authority-data:", wantErr: "insecure"},
		{name: "plain http", from: "server: https://", to: "server: http://", wantErr: "https"},
		{name: "unknown context", from: "current-context: admin@test", to: "current-context: nope", wantErr: "context"},
		{name: "unknown cluster", from: "    cluster: test", to: "    cluster: nope", wantErr: `cluster "nope" not found`},
		{name: "unknown user", from: "    user: admin", to: "    user: nope", wantErr: `user "nope" not found`},
		{name: "CA data not PEM", from: "    certificate-authority-data: ", to: "    certificate-authority-data: bm90IFBFTQ==\n    x: ", wantErr: "no PEM"},
		{name: "missing CA file", from: "    certificate-authority-data: ", to: "    certificate-authority: /nonexistent/ca.crt\n    x: ", wantErr: "CA"},
		{name: "no credentials", from: "    token: x", to: "    username: bob", wantErr: "no token or client certificate"},
		{name: "not yaml", from: "apiVersion", to: "\t:::", wantErr: "kubeconfig"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kc := writeFile(t, "kc", []byte(strings.Replace(good, tt.from, tt.to, 1)))
			_, err := tokenreview.New(tokenreview.Config{KubeConfigFile: kc})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "tokenreview: ") {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
	for _, tt := range []struct {
		name    string
		conf    tokenreview.Config
		wantErr string
	}{
		{name: "missing kubeconfig", conf: tokenreview.Config{KubeConfigFile: "/nonexistent"}, wantErr: "kubeconfig"},
		{name: "neither", wantErr: "neither"},
		{name: "both", conf: tokenreview.Config{KubeConfigFile: "/x", InCluster: true}, wantErr: "not both"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tokenreview.New(tt.conf); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// A server whose certificate does not chain to the kubeconfig's CA never
// sees the token.
func TestUntrustedServer(t *testing.T) {
	api := fakeapi.Start(t, nil)
	kc := api.Kubeconfig(t, "    token: "+fakeapi.AdminToken)
	_, _, other := newCA(t, "other CA")
	kc = writeFile(t, "kc2", []byte(strings.Replace(string(mustRead(t, kc)), base64.StdEncoding.EncodeToString(fakeapi.CAPEM(api.Server)),
		base64.StdEncoding.EncodeToString(other), 1)))
	if _, err := newClient(t, kc).Review(context.Background(), "good", aud); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("err = %v", err)
	}
	if api.Calls() != 0 {
		t.Fatal("token sent to an unverified server")
	}
}

// Answers that are not a review are errors.
func TestBadAnswers(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		wantErr string
	}{
		{name: "forbidden", handler: func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, `{"kind":"Status","reason":"Forbidden"}`, http.StatusForbidden)
		}, wantErr: "403 Forbidden"},
		{name: "not JSON", handler: func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte("<html>"))
		}, wantErr: "answer"},
		{name: "oversized", handler: func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte(`{"status":{"error":"` + strings.Repeat("x", tokenreview.MaxReviewSize) + `"}}`))
		}, wantErr: "larger than"},
		{name: "redirect", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://evil.test/", http.StatusTemporaryRedirect)
		}, wantErr: "redirects are not followed"},
		{name: "wrong field types", handler: func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte(`{"status":{"authenticated":"yes"}}`))
		}, wantErr: "answer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewTLSServer(tt.handler)
			t.Cleanup(srv.Close)
			r, err := newClient(t, fakeapi.Kubeconfig(t, srv, "    token: x")).Review(context.Background(), "tok", aud)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || r.Authenticated {
				t.Fatalf("Review = %+v, %v, want %q", r, err, tt.wantErr)
			}
		})
	}
}

// ForCluster builds a client from a k8s_psat cluster block.
func TestForCluster(t *testing.T) {
	api := fakeapi.Start(t, map[string]authv1.TokenReviewStatus{"good": fakeapi.SAStatus("hallmark", "agent", nil)})
	r, err := tokenreview.ForCluster(k8spsat.ClusterConfig{Name: "c", KubeConfigFile: api.Kubeconfig(t, "    token: "+fakeapi.AdminToken)})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r.Review(context.Background(), "good", aud); err != nil || !got.Authenticated {
		t.Fatalf("Review = %+v, %v", got, err)
	}
	r, err = tokenreview.ForCluster(k8spsat.ClusterConfig{Name: "c", KubeConfigFile: "/nonexistent"})
	if err == nil || r != nil {
		t.Fatalf("ForCluster = %v, %v; want a nil interface and an error", r, err)
	}
}

func writeFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newCA returns a self-signed CA.
func newCA(t testing.TB, cn string) (*ecdsa.PrivateKey, *x509.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func otherKeyPEM(t testing.TB) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}
