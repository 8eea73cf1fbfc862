package kubeapi

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestInClusterReviewer(t *testing.T) {
	dir := t.TempDir()
	old := inClusterDir
	inClusterDir = dir
	t.Cleanup(func() { inClusterDir = old })

	c := Config{InCluster: true}
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	if _, err := New(c); err == nil || !strings.Contains(err.Error(), "KUBERNETES_SERVICE_HOST") {
		t.Fatalf("err = %v", err)
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
	t.Setenv("KUBERNETES_SERVICE_PORT", "443")
	if _, err := New(c); err == nil || !strings.Contains(err.Error(), "CA") {
		t.Fatalf("err = %v", err)
	}
	writeCA(t, filepath.Join(dir, "ca.crt"))
	if _, err := New(c); err == nil || !strings.Contains(err.Error(), "token") {
		t.Fatalf("err = %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	if u := r.URL("/apis/authentication.k8s.io/v1/tokenreviews"); u != "https://[fd00::1]:443/apis/authentication.k8s.io/v1/tokenreviews" {
		t.Fatalf("url = %s", u)
	}
	if b, err := r.bearer(); err != nil || b != "tok" {
		t.Fatalf("bearer = %q, %v", b, err)
	}
}

func writeCA(t *testing.T, path string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Transport sends the token as read at each request (the kubelet rotates
// it), on a copy of the caller's request.
func TestTransportRereadsToken(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte("one\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var got []string
	c := &Client{base: "https://k.example", client: apiClient(nil), bearer: fileBearer(tok)}
	base, rt := c.Transport()
	if base != "https://k.example" {
		t.Fatalf("base = %s", base)
	}
	bt := rt.(bearerTransport)
	bt.base = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		got = append(got, r.Header.Get("Authorization"))
		return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
	})
	for _, next := range []string{"two", ""} {
		req, _ := http.NewRequest(http.MethodGet, "https://k.example/api", nil)
		if _, err := bt.RoundTrip(req); err != nil {
			t.Fatal(err)
		}
		if req.Header.Get("Authorization") != "" {
			t.Fatal("the caller's request was modified")
		}
		if next != "" {
			if err := os.WriteFile(tok, []byte(next+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	if strings.Join(got, ",") != "Bearer one,Bearer two" {
		t.Fatalf("tokens sent: %v", got)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
