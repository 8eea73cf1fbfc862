package ca_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/server/ca"
)

var (
	td    = spiffeid.RequireTrustDomainFromString("example.org")
	t0    = time.Date(2031, time.March, 1, 12, 0, 0, 0, time.UTC)
	wlID  = spiffeid.RequireFromPath(td, "/workload/web")
	rsaMu sync.Mutex
	// rsaKeys caches RSA keys by size: generating them dominates test time.
	rsaKeys = map[int]*rsa.PrivateKey{}
)

// fixedClock is a settable clock for Config.Clock.
type fixedClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fixedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fixedClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

func rsaKey(t testing.TB, bits int) *rsa.PrivateKey {
	t.Helper()
	rsaMu.Lock()
	defer rsaMu.Unlock()
	if k, ok := rsaKeys[bits]; ok {
		return k
	}
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	rsaKeys[bits] = k
	return k
}

func ecKey(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func edKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// leafKeys are the subject key types the CA must certify.
func leafKeys(t testing.TB) map[string]crypto.Signer {
	return map[string]crypto.Signer{
		"ec-p256":  ecKey(t, elliptic.P256()),
		"ec-p384":  ecKey(t, elliptic.P384()),
		"rsa-2048": rsaKey(t, 2048),
		"ed25519":  edKey(t),
	}
}

// newCA creates a CA in a fresh directory with a fixed clock at t0.
func newCA(t testing.TB, keyType string) (*ca.CA, *fixedClock, string) {
	t.Helper()
	clk := &fixedClock{now: t0}
	dir := filepath.Join(t.TempDir(), "ca")
	c, err := ca.New(ca.Config{TrustDomain: td, KeyType: keyType, Dir: dir, Clock: clk.Now, TTL: 30 * 24 * time.Hour})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c, clk, dir
}

// makeCSR builds a DER CSR for key from tmpl (nil: an empty subject).
func makeCSR(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	if tmpl == nil {
		tmpl = &x509.CertificateRequest{Subject: pkix.Name{CommonName: "csr"}}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// logBuffer returns a logger writing text records into the returned buffer.
func logBuffer() (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), &buf
}

func fileMode(t testing.TB, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}
