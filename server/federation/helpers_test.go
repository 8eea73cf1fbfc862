package federation_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/server/federation"
)

// testCA is a self-signed CA of one trust domain.
type testCA struct {
	td   spiffeid.TrustDomain
	cert *x509.Certificate
	key  crypto.Signer
}

var serial atomic.Int64

func nextSerial() *big.Int { return big.NewInt(1000 + serial.Add(1)) }

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newCA makes a root for td whose URI SAN is uri (the trust domain ID when
// empty).
func newCA(t testing.TB, td string, uri ...string) *testCA {
	t.Helper()
	trust := spiffeid.RequireTrustDomainFromString(td)
	u := trust.ID().URL()
	if len(uri) > 0 {
		var err error
		if u, err = url.Parse(uri[0]); err != nil {
			t.Fatal(err)
		}
	}
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: "test CA " + td},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
		URIs: []*url.URL{u},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{td: trust, cert: cert, key: key}
}

// svid returns an X509-SVID for id signed by ca, as a TLS certificate.
func (ca *testCA) svid(t testing.TB, id string) *tls.Certificate {
	t.Helper()
	u, err := url.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	return ca.leaf(t, &x509.Certificate{URIs: []*url.URL{u}})
}

// web returns a web PKI server certificate for 127.0.0.1 signed by ca.
func (ca *testCA) web(t testing.TB) *tls.Certificate {
	t.Helper()
	return ca.leaf(t, &x509.Certificate{
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
}

func (ca *testCA) leaf(t testing.TB, tmpl *x509.Certificate) *tls.Certificate {
	t.Helper()
	key := newKey(t)
	tmpl.SerialNumber = nextSerial()
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Minute), time.Now().Add(time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func (ca *testCA) bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(ca.td, []*x509.Certificate{ca.cert})
}

// spiffeBundle returns ca's bundle with sequence seq.
func (ca *testCA) spiffeBundle(seq uint64) *spiffebundle.Bundle {
	b := spiffebundle.FromX509Authorities(ca.td, []*x509.Certificate{ca.cert})
	b.SetSequenceNumber(seq)
	return b
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// source is a mutable bundle source for an Endpoint.
type source struct {
	mu    sync.Mutex
	certs []*x509.Certificate
	seq   uint64
}

func (s *source) set(seq uint64, certs ...*x509.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.certs, s.seq = certs, seq
}

func (s *source) get() ([]*x509.Certificate, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.certs, s.seq
}

// serveEndpoint runs e on a loopback listener until the test ends and
// returns its https URL.
func serveEndpoint(t testing.TB, e *federation.Endpoint) string {
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
			t.Errorf("Serve: %v", err)
		}
	})
	return "https://" + ln.Addr().String() + "/"
}

// spiffeEndpoint starts an https_spiffe endpoint for ca's trust domain
// serving src with the server SVID of ca.
func spiffeEndpoint(t testing.TB, ca *testCA, src *source, hint time.Duration) string {
	t.Helper()
	u, _ := spiffeEndpointSVID(t, ca, src, hint)
	return u
}

// spiffeEndpointSVID is spiffeEndpoint that also returns the served SVID,
// to be replaced at will.
func spiffeEndpointSVID(t testing.TB, ca *testCA, src *source, hint time.Duration) (string, *atomic.Pointer[tls.Certificate]) {
	t.Helper()
	var cert atomic.Pointer[tls.Certificate]
	cert.Store(ca.svid(t, ca.td.ID().String()+"/hallmark/server"))
	e, err := federation.NewEndpoint(federation.EndpointConfig{
		TrustDomain: ca.td, Profile: federation.ProfileHTTPSSPIFFE,
		GetCertificate: func() (*tls.Certificate, error) { return cert.Load(), nil },
		Bundle:         src.get, RefreshHint: hint,
	})
	if err != nil {
		t.Fatal(err)
	}
	return serveEndpoint(t, e), &cert
}

// rawServer serves h over TLS with cert (an SVID or a web certificate).
func rawServer(t testing.TB, cert *tls.Certificate, h http.HandlerFunc) string {
	t.Helper()
	ts := httptest.NewUnstartedServer(h)
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}}
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // rejected handshakes are the point
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return ts.URL + "/"
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// writePair writes cert and its key as PEM files in dir.
func writePair(t testing.TB, dir string, cert *tls.Certificate) (certPath, keyPath string) {
	t.Helper()
	certPath, keyPath = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, certPath, "CERTIFICATE", cert.Certificate[0])
	writePEM(t, keyPath, "PRIVATE KEY", der)
	return certPath, keyPath
}

func td(s string) spiffeid.TrustDomain { return spiffeid.RequireTrustDomainFromString(s) }

func id(s string) spiffeid.ID { return spiffeid.RequireFromString(s) }

func assertClosed(t testing.TB, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	default:
		t.Fatalf("Changed not closed %s", what)
	}
}

func hasAuthority(b *spiffebundle.Bundle, c *x509.Certificate) bool {
	return b != nil && b.HasX509Authority(c)
}

// bundleSet returns the fetcher's X.509 bundles as a go-spiffe source.
func bundleSet(f *federation.Fetcher) *x509bundle.Set {
	set := x509bundle.NewSet()
	for _, b := range f.X509Bundles() {
		set.Add(b)
	}
	return set
}

func b64(c *x509.Certificate) string { return base64.StdEncoding.EncodeToString(c.Raw) }

// waitFor polls cond for up to 10 s.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// fetchDoc returns what e's handler serves for GET /.
func fetchDoc(t testing.TB, e *federation.Endpoint) []byte {
	t.Helper()
	rec := httptest.NewRecorder()
	e.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 200 {
		t.Fatalf("status %d", rec.Code)
	}
	return rec.Body.Bytes()
}
