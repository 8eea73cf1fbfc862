package federation_test

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/hallmarkid/hallmark/server/federation"
)

func TestEndpointServesSPIFFEBundle(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "a.test")
	jwtKey := newKey(t)
	src := &source{}
	src.set(7, ca.cert)
	svid := ca.svid(t, "spiffe://a.test/hallmark/server")
	e, err := federation.NewEndpoint(federation.EndpointConfig{
		TrustDomain: ca.td, Profile: federation.ProfileHTTPSSPIFFE,
		GetCertificate: func() (*tls.Certificate, error) { return svid, nil },
		Bundle:         src.get,
		JWTAuthorities: func() map[string]crypto.PublicKey { return map[string]crypto.PublicKey{"k1": jwtKey.Public()} },
		RefreshHint:    90*time.Second + time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	u := serveEndpoint(t, e)

	// A stock go-spiffe client authenticates the endpoint by its SVID.
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: tlsconfig.TLSClientConfig(ca.bundle(), tlsconfig.AuthorizeID(id("spiffe://a.test/hallmark/server"))),
	}}
	resp, err := client.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	b, err := spiffebundle.Parse(ca.td, body)
	if err != nil {
		t.Fatalf("parse served bundle: %v\n%s", err, body)
	}
	if seq, _ := b.SequenceNumber(); seq != 7 {
		t.Errorf("sequence %d, want 7", seq)
	}
	if hint, _ := b.RefreshHint(); hint != 91*time.Second {
		t.Errorf("refresh hint %v, want 91s (rounded up)", hint)
	}
	if got := b.X509Authorities(); len(got) != 1 || !got[0].Equal(ca.cert) {
		t.Errorf("X.509 authorities %v", got)
	}
	if k, ok := b.FindJWTAuthority("k1"); !ok || !jwtKey.PublicKey.Equal(k) {
		t.Errorf("JWT authority k1 missing or wrong")
	}

	// A sequence bump is served at once.
	other := newCA(t, "a.test")
	src.set(8, ca.cert, other.cert)
	resp, err = client.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	b, err = spiffebundle.Parse(ca.td, body)
	if err != nil {
		t.Fatal(err)
	}
	if seq, _ := b.SequenceNumber(); seq != 8 || len(b.X509Authorities()) != 2 {
		t.Errorf("after rotation: sequence %d, %d authorities", seq, len(b.X509Authorities()))
	}
}

func TestEndpointHandler(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "a.test")
	src := &source{}
	src.set(1, ca.cert)
	e, err := federation.NewEndpoint(federation.EndpointConfig{
		Profile: federation.ProfileHTTPSSPIFFE, Bundle: src.get,
		GetCertificate: func() (*tls.Certificate, error) { return nil, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	h := e.Handler()
	tests := []struct {
		name, method, path string
		empty              bool
		wantStatus         int
		wantAllow          string
	}{
		{name: "get", method: "GET", path: "/", wantStatus: 200},
		{name: "post", method: "POST", path: "/", wantStatus: 405, wantAllow: "GET"},
		{name: "put", method: "PUT", path: "/", wantStatus: 405, wantAllow: "GET"},
		{name: "head", method: "HEAD", path: "/", wantStatus: 405, wantAllow: "GET"},
		{name: "other path", method: "GET", path: "/bundle", wantStatus: 404},
		{name: "empty bundle is never published", method: "GET", path: "/", empty: true, wantStatus: 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.empty {
				src.set(2)
				defer src.set(1, ca.cert)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
			if rec.Code != tt.wantStatus {
				t.Errorf("status %d, want %d", rec.Code, tt.wantStatus)
			}
			if got := rec.Header().Get("Allow"); got != tt.wantAllow {
				t.Errorf("Allow %q, want %q", got, tt.wantAllow)
			}
		})
	}
}

func TestEndpointHTTPSWebReloadsCertificate(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "a.test")
	webCA := newCA(t, "web.test")
	dir := t.TempDir()
	first := webCA.web(t)
	certPath, keyPath := writePair(t, dir, first)
	src := &source{}
	src.set(1, ca.cert)
	e, err := federation.NewEndpoint(federation.EndpointConfig{
		TrustDomain: ca.td, Profile: federation.ProfileHTTPSWeb, CertFile: certPath, KeyFile: keyPath,
		CertReloadInterval: time.Nanosecond, Bundle: src.get,
	})
	if err != nil {
		t.Fatal(err)
	}
	u := serveEndpoint(t, e)
	servedLeaf := func() *x509.Certificate {
		t.Helper()
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true,
			TLSClientConfig: &tls.Config{RootCAs: webCA.pool()}}}
		resp, err := client.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		return resp.TLS.PeerCertificates[0]
	}
	if got := servedLeaf(); !got.Equal(first.Leaf) {
		t.Fatal("not serving the configured certificate")
	}

	second := webCA.web(t)
	writePair(t, dir, second)
	// Make the change visible even on file systems with coarse mtimes.
	later := time.Now().Add(2 * time.Second)
	for _, p := range []string{certPath, keyPath} {
		if err := os.Chtimes(p, later, later); err != nil {
			t.Fatal(err)
		}
	}
	if got := servedLeaf(); !got.Equal(second.Leaf) {
		t.Fatal("the rewritten certificate was not picked up")
	}

	// A broken rewrite keeps the previous pair.
	if err := os.WriteFile(certPath, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := servedLeaf(); !got.Equal(second.Leaf) {
		t.Fatal("a broken certificate file replaced the served one")
	}
}

func TestNewEndpointErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	garbage := dir + "/garbage.pem"
	if err := os.WriteFile(garbage, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	bundle := func() ([]*x509.Certificate, uint64) { return nil, 0 }
	tests := []struct {
		name    string
		cfg     federation.EndpointConfig
		wantErr string
	}{
		{name: "no bundle source", cfg: federation.EndpointConfig{Profile: federation.ProfileHTTPSWeb}, wantErr: "no Bundle source"},
		{name: "unknown profile", cfg: federation.EndpointConfig{Profile: "http", Bundle: bundle}, wantErr: `profile "http"`},
		{name: "web without files", cfg: federation.EndpointConfig{Profile: federation.ProfileHTTPSWeb, Bundle: bundle}, wantErr: "certificate file"},
		{name: "web with missing files", cfg: federation.EndpointConfig{Profile: federation.ProfileHTTPSWeb, Bundle: bundle,
			CertFile: dir + "/nope.crt", KeyFile: dir + "/nope.key"}, wantErr: "no such file"},
		{name: "web with bad files", cfg: federation.EndpointConfig{Profile: federation.ProfileHTTPSWeb, Bundle: bundle,
			CertFile: garbage, KeyFile: garbage}, wantErr: "serving certificate"},
		{name: "spiffe without SVID source", cfg: federation.EndpointConfig{Profile: federation.ProfileHTTPSSPIFFE, Bundle: bundle}, wantErr: "GetCertificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := federation.NewEndpoint(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestEndpointDocumentShape(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "a.test")
	e, err := federation.NewEndpoint(federation.EndpointConfig{
		Profile: federation.ProfileHTTPSSPIFFE, GetCertificate: func() (*tls.Certificate, error) { return nil, nil },
		Bundle: func() ([]*x509.Certificate, uint64) { return []*x509.Certificate{ca.cert}, 0 },
	})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	e.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	// Sequence 0 is still written, and the default hint is 5 minutes.
	if string(doc["spiffe_sequence"]) != "0" || string(doc["spiffe_refresh_hint"]) != "300" {
		t.Errorf("spiffe_sequence %s, spiffe_refresh_hint %s", doc["spiffe_sequence"], doc["spiffe_refresh_hint"])
	}
	var keys []map[string]any
	if err := json.Unmarshal(doc["keys"], &keys); err != nil || len(keys) != 1 || keys[0]["use"] != "x509-svid" {
		t.Errorf("keys %s", doc["keys"])
	}
}

func TestEndpointListenAndServe(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "a.test")
	src := &source{}
	src.set(1, ca.cert)
	svid := ca.svid(t, "spiffe://a.test/hallmark/server")
	mk := func(addr string) *federation.Endpoint {
		e, err := federation.NewEndpoint(federation.EndpointConfig{Address: addr, Profile: federation.ProfileHTTPSSPIFFE,
			GetCertificate: func() (*tls.Certificate, error) { return svid, nil }, Bundle: src.get})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	if err := mk("127.0.0.1:-1").ListenAndServe(t.Context()); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("bad address: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- mk("127.0.0.1:0").ListenAndServe(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}
