package oidc_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/server/jwtsigner"
	"github.com/hallmarkid/hallmark/server/oidc"
)

// serve starts e on a loopback listener and returns its address; it stops
// at cleanup, and Serve must then return nil.
func serve(t *testing.T, e *oidc.Endpoint) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve returned %v after cancel", err)
		}
	})
	return ln.Addr().String()
}

// getHost GETs path from addr naming host in the Host header, as a TLS
// proxy in front of the endpoint would.
func getHost(t *testing.T, c *http.Client, scheme, addr, host, path string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, scheme+"://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func jwksKIDs(t *testing.T, body []byte) map[string]bool {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatalf("JWKS %s: %v", body, err)
	}
	out := map[string]bool{}
	for _, k := range set.Keys {
		out[k.KeyID] = true
	}
	return out
}

// Plain HTTP on loopback behind a proxy: the issuer's host is accepted,
// others are refused, and the keys follow rotation at once.
func TestEndpointPlainHTTPFollowsRotation(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	td := spiffeid.RequireTrustDomainFromString("example.org")
	s, err := jwtsigner.New(jwtsigner.Config{TrustDomain: td, Dir: filepath.Join(t.TempDir(), "jwt"), KeyTTL: time.Hour, Clock: func() time.Time { return clock() }})
	if err != nil {
		t.Fatal(err)
	}
	const issuer = "https://oidc.example.org"
	e, err := oidc.New(oidc.Config{Issuer: issuer, Keys: s.JWTAuthorities, Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, e)
	c := http.DefaultClient

	code, body := getHost(t, c, "http", addr, "oidc.example.org", oidc.DiscoveryPath)
	var d oidc.Discovery
	if code != 200 || json.Unmarshal(body, &d) != nil || d.Issuer != issuer || d.JWKSURI != issuer+"/keys" {
		t.Fatalf("discovery %d %s", code, body)
	}
	if code, body := getHost(t, c, "http", addr, "OIDC.example.org:443", oidc.KeysPath); code != 200 || len(jwksKIDs(t, body)) != 1 {
		t.Fatalf("keys %d %s", code, body)
	}
	for _, host := range []string{"evil.example.org", addr, "oidc.example.org.evil.org"} {
		if code, _ := getHost(t, c, "http", addr, host, oidc.KeysPath); code != http.StatusMisdirectedRequest {
			t.Errorf("Host %q: %d, want 421", host, code)
		}
	}

	now = now.Add(30 * time.Minute)
	if err := s.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, body = getHost(t, c, "http", addr, "oidc.example.org", oidc.KeysPath)
	if got := jwksKIDs(t, body); len(got) != 2 || !got[s.NextKeyID()] || !got[s.ActiveKeyID()] {
		t.Fatalf("after preparing: JWKS %v, want active %s and next %s", got, s.ActiveKeyID(), s.NextKeyID())
	}
}

func TestNewRefuses(t *testing.T) {
	keys := func() map[string]crypto.PublicKey { return nil }
	for _, tt := range []struct {
		name    string
		cfg     oidc.Config
		wantErr string
	}{
		{name: "plain HTTP on every interface", cfg: oidc.Config{Issuer: "https://o.example.org", Keys: keys, Address: "0.0.0.0:80"}, wantErr: "only a loopback address"},
		{name: "plain HTTP on a host name", cfg: oidc.Config{Issuer: "https://o.example.org", Keys: keys, Address: "localhost:80"}, wantErr: "only a loopback address"},
		{name: "no port", cfg: oidc.Config{Issuer: "https://o.example.org", Keys: keys, Address: "127.0.0.1"}, wantErr: "address"},
		{name: "cert without key", cfg: oidc.Config{Issuer: "https://o.example.org", Keys: keys, Address: "0.0.0.0:443", CertFile: "/c"}, wantErr: "both"},
		{name: "missing cert files", cfg: oidc.Config{Issuer: "https://o.example.org", Keys: keys, Address: "0.0.0.0:443", CertFile: "/nonexistent/c", KeyFile: "/nonexistent/k"}, wantErr: "no such file"},
		{name: "http issuer", cfg: oidc.Config{Issuer: "http://o.example.org", Keys: keys, Address: "127.0.0.1:80"}, wantErr: "https"},
		{name: "no keys", cfg: oidc.Config{Issuer: "https://o.example.org", Address: "127.0.0.1:80"}, wantErr: "keys function"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := oidc.New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// writeCert writes a self-signed certificate for name and its key.
func writeCert(t *testing.T, certPath, keyPath, name string) *x509.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(k)
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

func tlsClient(root *x509.Certificate) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(root)
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool, ServerName: "oidc.example.org"},
		DisableKeepAlives: true,
	}}
}

// HTTPS with certificate files: served, and replaced when the files change.
func TestEndpointHTTPSReloadsCertificate(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	first := writeCert(t, certPath, keyPath, "oidc.example.org")
	e, err := oidc.New(oidc.Config{Issuer: "https://oidc.example.org", Address: "0.0.0.0:0", CertFile: certPath, KeyFile: keyPath,
		CertReloadInterval: time.Nanosecond, Keys: func() map[string]crypto.PublicKey { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, e)
	if code, body := getHost(t, tlsClient(first), "https", addr, "oidc.example.org", oidc.KeysPath); code != 200 || string(body) != `{"keys":[]}` {
		t.Fatalf("HTTPS keys %d %s", code, body)
	}
	// A new pair with a later modification time.
	second := writeCert(t, certPath, keyPath, "oidc.example.org")
	later := time.Now().Add(time.Minute)
	_ = os.Chtimes(certPath, later, later)
	if code, _ := getHost(t, tlsClient(second), "https", addr, "oidc.example.org", oidc.KeysPath); code != 200 {
		t.Fatalf("after reload: %d", code)
	}
	// A broken replacement keeps the previous pair.
	if err := os.WriteFile(certPath, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _ := getHost(t, tlsClient(second), "https", addr, "oidc.example.org", oidc.KeysPath); code != 200 {
		t.Fatalf("after a broken replacement: %d", code)
	}
}
