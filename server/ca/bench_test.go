package ca_test

import (
	"context"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/server/ca"
)

// The two benchmarks below are meant to be read side by side: SignX509SVID
// (validation, template, signing, parsing the result back) against a bare
// x509.CreateCertificate of the same leaf shape with the same P-256 issuer.
// Compare with: go test -run='^$' -bench='SignX509SVID|RawCreate' ./server/ca

func BenchmarkSignX509SVID(b *testing.B) {
	c, err := ca.New(ca.Config{TrustDomain: td, KeyType: ca.KeyTypeECP256, Dir: filepath.Join(b.TempDir(), "ca")})
	if err != nil {
		b.Fatal(err)
	}
	p := ca.X509SVIDParams{ID: wlID, PublicKey: ecKey(b, elliptic.P256()).Public(), TTL: time.Hour}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.SignX509SVID(ctx, p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignX509SVIDParallel(b *testing.B) {
	c, err := ca.New(ca.Config{TrustDomain: td, KeyType: ca.KeyTypeECP256, Dir: filepath.Join(b.TempDir(), "ca")})
	if err != nil {
		b.Fatal(err)
	}
	p := ca.X509SVIDParams{ID: wlID, PublicKey: ecKey(b, elliptic.P256()).Public(), TTL: time.Hour}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.SignX509SVID(context.Background(), p); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkRawCreateCertificate(b *testing.B) {
	issuerKey := ecKey(b, elliptic.P256())
	now := time.Now()
	root := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{"Hallmark"}, CommonName: "Hallmark CA example.org"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		URIs:                  []*url.URL{td.ID().URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, root, root, issuerKey.Public(), issuerKey)
	if err != nil {
		b.Fatal(err)
	}
	if root, err = x509.ParseCertificate(der); err != nil {
		b.Fatal(err)
	}
	pub := ecKey(b, elliptic.P256()).Public()
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	b.ReportAllocs()
	for b.Loop() {
		serial, err := rand.Int(rand.Reader, limit)
		if err != nil {
			b.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber:          serial,
			Subject:               pkix.Name{Organization: []string{"Hallmark"}},
			NotBefore:             now.Add(-10 * time.Second),
			NotAfter:              now.Add(time.Hour),
			KeyUsage:              x509.KeyUsageDigitalSignature,
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			BasicConstraintsValid: true,
			URIs:                  []*url.URL{wlID.URL()},
			AuthorityKeyId:        root.SubjectKeyId,
		}
		if _, err := x509.CreateCertificate(rand.Reader, tmpl, root, pub, issuerKey); err != nil {
			b.Fatal(err)
		}
	}
}
