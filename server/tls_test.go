package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

func selfSigned(t testing.TB, name string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestClientCAs: handshakes share one configuration (one pool) while the
// bundle stays the same — a fresh copy of the same certificates included,
// as CA.Bundle returns — and get a new one, trusting exactly the new
// bundle, as soon as it changes; a handshake served from the cache
// allocates nothing.
func TestClientCAs(t *testing.T) {
	rootA, rootB := selfSigned(t, "A"), selfSigned(t, "B")
	var c clientCAs
	builds := 0
	build := func(pool *x509.CertPool) *tls.Config {
		builds++
		return &tls.Config{ClientCAs: pool}
	}
	first := c.config([]*x509.Certificate{rootA}, build)
	if again := c.config([]*x509.Certificate{rootA}, build); again != first || builds != 1 {
		t.Fatalf("same bundle: new configuration (builds %d)", builds)
	}
	reparsed, err := x509.ParseCertificate(rootA.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if again := c.config([]*x509.Certificate{reparsed}, build); again != first || builds != 1 {
		t.Fatalf("same certificate, another copy: new configuration (builds %d)", builds)
	}
	same := []*x509.Certificate{rootA}
	allocs := testing.AllocsPerRun(100, func() { c.config(same, build) })
	if allocs != 0 {
		t.Errorf("cached handshake configuration: %.0f allocations, want 0", allocs)
	}

	both := c.config([]*x509.Certificate{rootA, rootB}, build)
	if both == first || builds != 2 {
		t.Fatalf("authority added: configuration not rebuilt (builds %d)", builds)
	}
	if !trusts(both, rootA) || !trusts(both, rootB) {
		t.Fatal("rebuilt configuration does not trust both authorities")
	}
	onlyB := c.config([]*x509.Certificate{rootB}, build)
	if onlyB == both || builds != 3 || trusts(onlyB, rootA) || !trusts(onlyB, rootB) {
		t.Fatalf("authority removed: still trusted or not rebuilt (builds %d)", builds)
	}
}

func trusts(cfg *tls.Config, root *x509.Certificate) bool {
	_, err := root.Verify(x509.VerifyOptions{Roots: cfg.ClientCAs})
	return err == nil
}

// BenchmarkClientCAs: the per-handshake cost of the client-CA
// configuration with a two-authority bundle, built per handshake (as
// before) and cached.
func BenchmarkClientCAs(b *testing.B) {
	bundle := []*x509.Certificate{selfSigned(b, "A"), selfSigned(b, "B")}
	build := func(pool *x509.CertPool) *tls.Config { return &tls.Config{ClientCAs: pool} }
	b.Run("per-handshake", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var c clientCAs // a fresh cache: what every handshake paid before
			c.config(bundle, build)
		}
	})
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		var c clientCAs
		for b.Loop() {
			c.config(bundle, build)
		}
	})
}
