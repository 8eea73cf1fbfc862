package ca_test

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/server/ca"
)

// The benchmarks below are meant to be read side by side: SignX509SVID
// (validation, template, direct signing, parsing the result back),
// SignX509SVIDRaw (the same without the parse), the stdlib path they
// replaced (x509.CreateCertificate, which verifies its own signature, then
// the parse) against a bare x509.CreateCertificate of the same leaf shape
// with the same P-256 issuer.
// Compare with: go test -run='^$' -bench='SignX509SVID|RawCreate|Interleaved' ./server/ca
// On a loaded machine trust the Interleaved benchmarks' ratios: each
// iteration runs every variant once, so that load hits them equally.

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

func BenchmarkSignX509SVIDRaw(b *testing.B) {
	c, err := ca.New(ca.Config{TrustDomain: td, KeyType: ca.KeyTypeECP256, Dir: filepath.Join(b.TempDir(), "ca")})
	if err != nil {
		b.Fatal(err)
	}
	p := ca.X509SVIDParams{ID: wlID, PublicKey: ecKey(b, elliptic.P256()).Public(), TTL: time.Hour}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.SignX509SVIDRaw(ctx, p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSignX509SVIDStdlib is SignX509SVID's path before the direct
// signer: x509.CreateCertificate, then the parse.
func BenchmarkSignX509SVIDStdlib(b *testing.B) {
	c, err := ca.New(ca.Config{TrustDomain: td, KeyType: ca.KeyTypeECP256, Dir: filepath.Join(b.TempDir(), "ca")})
	if err != nil {
		b.Fatal(err)
	}
	p := ca.X509SVIDParams{ID: wlID, PublicKey: ecKey(b, elliptic.P256()).Public(), TTL: time.Hour}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.SignX509SVIDStdlib(ctx, p); err != nil {
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
	raw := newRawIssuer(b)
	b.ReportAllocs()
	for b.Loop() {
		raw.sign(b)
	}
}

// BenchmarkSignVsRawInterleaved alternates one SignX509SVID and one raw
// CreateCertificate per iteration, so that load from other processes hits
// both equally, and reports the issuance rate ratio (sign rate / raw rate).
func BenchmarkSignVsRawInterleaved(b *testing.B) {
	c, err := ca.New(ca.Config{TrustDomain: td, KeyType: ca.KeyTypeECP256, Dir: filepath.Join(b.TempDir(), "ca")})
	if err != nil {
		b.Fatal(err)
	}
	p := ca.X509SVIDParams{ID: wlID, PublicKey: ecKey(b, elliptic.P256()).Public(), TTL: time.Hour}
	raw := newRawIssuer(b)
	ctx := context.Background()
	var signDur, rawDur []time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := c.SignX509SVID(ctx, p); err != nil {
			b.Fatal(err)
		}
		mid := time.Now()
		raw.sign(b)
		rawDur = append(rawDur, time.Since(mid))
		signDur = append(signDur, mid.Sub(start))
	}
	// Medians, so that a preempted iteration on a busy machine does not
	// decide the ratio.
	signMed, rawMed := median(signDur), median(rawDur)
	b.ReportMetric(float64(rawMed)/float64(signMed), "sign/raw-rate")
	b.ReportMetric(float64(signMed.Nanoseconds()), "sign-median-ns")
	b.ReportMetric(float64(rawMed.Nanoseconds()), "raw-median-ns")
}

// BenchmarkServerPathInterleaved models the server's CPU per workload
// SVID, as the fleet benchmark's "signing under load" ratio does: the CSR
// check (parse and proof of possession, a control) and the signing, before
// (x509.ParseCertificateRequest; x509.CreateCertificate and the parse of
// its result) and now (the minimal CSR's fast path; direct signing, no
// parse), each against a raw x509.CreateCertificate in the same iteration.
// raw/old and raw/new are those ratios (goal >= 0.8). The CSR is the one
// agents send (a P-256 key, empty template).
func BenchmarkServerPathInterleaved(b *testing.B) {
	c, err := ca.New(ca.Config{TrustDomain: td, KeyType: ca.KeyTypeECP256, Dir: filepath.Join(b.TempDir(), "ca")})
	if err != nil {
		b.Fatal(err)
	}
	csr := makeCSR(b, ecKey(b, elliptic.P256()), &x509.CertificateRequest{})
	raw := newRawIssuer(b)
	b.ReportAllocs()
	ctx := context.Background()
	var oldDur, newDur, rawDur []time.Duration
	for b.Loop() {
		t0 := time.Now()
		req, err := ca.ParseCSRStdlib(csr)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.SignX509SVIDStdlib(ctx, ca.X509SVIDParams{ID: wlID, PublicKey: req.PublicKey, TTL: time.Hour}); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if req, err = ca.ParseCSR(csr); err != nil {
			b.Fatal(err)
		}
		if _, err := c.SignX509SVIDRaw(ctx, ca.X509SVIDParams{ID: wlID, PublicKey: req.PublicKey, TTL: time.Hour}); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		raw.sign(b)
		rawDur = append(rawDur, time.Since(t2))
		oldDur = append(oldDur, t1.Sub(t0))
		newDur = append(newDur, t2.Sub(t1))
	}
	oldMed, newMed, rawMed := median(oldDur), median(newDur), median(rawDur)
	b.ReportMetric(float64(rawMed)/float64(oldMed), "raw/old")
	b.ReportMetric(float64(rawMed)/float64(newMed), "raw/new")
	b.ReportMetric(float64(oldMed.Nanoseconds()), "old-median-ns")
	b.ReportMetric(float64(newMed.Nanoseconds()), "new-median-ns")
	b.ReportMetric(float64(rawMed.Nanoseconds()), "raw-median-ns")
}

// BenchmarkSignStdlibVsDirectInterleaved compares the signing alone:
// SignX509SVIDStdlib (before) and SignX509SVID (now, parse included) in
// the same iteration; direct/stdlib-rate is the speed-up.
func BenchmarkSignStdlibVsDirectInterleaved(b *testing.B) {
	c, err := ca.New(ca.Config{TrustDomain: td, KeyType: ca.KeyTypeECP256, Dir: filepath.Join(b.TempDir(), "ca")})
	if err != nil {
		b.Fatal(err)
	}
	p := ca.X509SVIDParams{ID: wlID, PublicKey: ecKey(b, elliptic.P256()).Public(), TTL: time.Hour}
	ctx := context.Background()
	var stdDur, dirDur []time.Duration
	for b.Loop() {
		t0 := time.Now()
		if _, err := c.SignX509SVIDStdlib(ctx, p); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := c.SignX509SVID(ctx, p); err != nil {
			b.Fatal(err)
		}
		dirDur = append(dirDur, time.Since(t1))
		stdDur = append(stdDur, t1.Sub(t0))
	}
	b.ReportMetric(float64(median(stdDur))/float64(median(dirDur)), "direct/stdlib-rate")
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// rawIssuer is a P-256 root used with x509.CreateCertificate directly.
type rawIssuer struct {
	root  *x509.Certificate
	key   crypto.Signer
	pub   crypto.PublicKey
	now   time.Time
	limit *big.Int
}

func newRawIssuer(b *testing.B) *rawIssuer {
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
	return &rawIssuer{root: root, key: issuerKey, pub: ecKey(b, elliptic.P256()).Public(), now: now,
		limit: new(big.Int).Lsh(big.NewInt(1), 128)}
}

// sign issues one leaf of the same shape as SignX509SVID's.
func (r *rawIssuer) sign(b *testing.B) {
	serial, err := rand.Int(rand.Reader, r.limit)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"Hallmark"}},
		NotBefore:             r.now.Add(-10 * time.Second),
		NotAfter:              r.now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{wlID.URL()},
		AuthorityKeyId:        r.root.SubjectKeyId,
	}
	if _, err := x509.CreateCertificate(rand.Reader, tmpl, r.root, r.pub, r.key); err != nil {
		b.Fatal(err)
	}
}
