package ca_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/hallmarkid/hallmark/server/ca"
)

var (
	oidKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidSAN              = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidAKID             = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidExtKeyUsage      = asn1.ObjectIdentifier{2, 5, 29, 37}
)

// leafWant is what a leaf must look like.
type leafWant struct {
	id        spiffeid.ID
	pub       crypto.PublicKey
	dnsNames  []string
	cn        string
	notBefore time.Time
	notAfter  time.Time
}

// checkLeaf asserts every property an X.509-SVID leaf must have, and that it
// verifies with the standard library and with go-spiffe.
func checkLeaf(t *testing.T, c *ca.CA, chain []*x509.Certificate, now time.Time, w leafWant) {
	t.Helper()
	if len(chain) != 1 {
		t.Fatalf("chain has %d certificates, want 1", len(chain))
	}
	leaf := chain[0]
	// Parse it back from DER so we test what goes on the wire.
	leaf, err := x509.ParseCertificate(leaf.Raw)
	if err != nil {
		t.Fatal(err)
	}
	root := c.Certificate()

	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != w.id.String() {
		t.Errorf("URIs = %v, want exactly [%s]", leaf.URIs, w.id)
	}
	if !slices.Equal(leaf.DNSNames, w.dnsNames) {
		t.Errorf("DNSNames = %v, want %v", leaf.DNSNames, w.dnsNames)
	}
	if len(leaf.EmailAddresses)+len(leaf.IPAddresses) != 0 {
		t.Errorf("unexpected SANs: %v %v", leaf.EmailAddresses, leaf.IPAddresses)
	}
	if !leaf.BasicConstraintsValid || leaf.IsCA {
		t.Errorf("BasicConstraintsValid=%v IsCA=%v, want true/false", leaf.BasicConstraintsValid, leaf.IsCA)
	}
	wantKU := x509.KeyUsageDigitalSignature
	if _, ok := w.pub.(*rsa.PublicKey); ok {
		wantKU |= x509.KeyUsageKeyEncipherment
	}
	if leaf.KeyUsage != wantKU {
		t.Errorf("KeyUsage = %b, want %b", leaf.KeyUsage, wantKU)
	}
	if leaf.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
		t.Error("leaf can sign certificates or CRLs")
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Errorf("ExtKeyUsage = %v", leaf.ExtKeyUsage)
	}
	if len(leaf.UnknownExtKeyUsage) != 0 {
		t.Errorf("UnknownExtKeyUsage = %v", leaf.UnknownExtKeyUsage)
	}
	allowed := []asn1.ObjectIdentifier{oidKeyUsage, oidSAN, oidBasicConstraints, oidAKID, oidExtKeyUsage}
	for _, e := range leaf.Extensions {
		if !slices.ContainsFunc(allowed, e.Id.Equal) {
			t.Errorf("unexpected extension %s", e.Id)
		}
		if e.Id.Equal(oidKeyUsage) && !e.Critical {
			t.Error("KeyUsage is not critical")
		}
	}
	if !bytes.Equal(leaf.AuthorityKeyId, root.SubjectKeyId) || len(leaf.AuthorityKeyId) == 0 {
		t.Errorf("AuthorityKeyId = %x, want the root's %x", leaf.AuthorityKeyId, root.SubjectKeyId)
	}
	if o := leaf.Subject.Organization; len(o) != 1 || o[0] != "Hallmark" {
		t.Errorf("Subject O = %v", o)
	}
	if leaf.Subject.CommonName != w.cn {
		t.Errorf("Subject CN = %q, want %q", leaf.Subject.CommonName, w.cn)
	}
	if !leaf.NotBefore.Equal(w.notBefore) {
		t.Errorf("NotBefore = %s, want %s", leaf.NotBefore, w.notBefore)
	}
	if !leaf.NotAfter.Equal(w.notAfter) {
		t.Errorf("NotAfter = %s, want %s", leaf.NotAfter, w.notAfter)
	}
	if leaf.NotAfter.After(root.NotAfter) {
		t.Error("leaf outlives the CA")
	}
	if leaf.SerialNumber.Sign() <= 0 || leaf.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %x is not a positive 128-bit number", leaf.SerialNumber)
	}
	if pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(w.pub) {
		t.Error("leaf does not carry the requested public key")
	}
	if !bytes.Equal(leaf.RawIssuer, root.RawSubject) {
		t.Error("issuer is not the root's subject")
	}

	roots := x509.NewCertPool()
	for _, b := range c.Bundle() {
		roots.AddCert(b)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}); err != nil {
		t.Errorf("x509 Verify: %v", err)
	}
	gotID, _, err := x509svid.Verify(chain, x509bundle.FromX509Authorities(td, c.Bundle()), x509svid.WithTime(now))
	if err != nil {
		t.Errorf("x509svid.Verify: %v", err)
	} else if gotID != w.id {
		t.Errorf("x509svid.Verify ID = %s, want %s", gotID, w.id)
	}
}

func TestSignX509SVIDLeaf(t *testing.T) {
	long := strings.Repeat("a", 60) + ".example.org" // 72 bytes: too long for a CN
	tests := []struct {
		name     string
		caKey    string
		dnsNames []string
		ttl      time.Duration
		wantCN   string
	}{
		{name: "P-256 CA", caKey: ca.KeyTypeECP256, ttl: time.Hour},
		{name: "P-384 CA", caKey: ca.KeyTypeECP384, ttl: time.Hour},
		{name: "RSA CA", caKey: ca.KeyTypeRSA2048, ttl: time.Hour},
		{name: "DNS names, first is CN", caKey: ca.KeyTypeECP256, ttl: time.Hour, dnsNames: []string{"web.example.org", "*.web.example.org"}, wantCN: "web.example.org"},
		{name: "DNS name too long for CN", caKey: ca.KeyTypeECP256, ttl: time.Hour, dnsNames: []string{long}},
		{name: "one-second TTL", caKey: ca.KeyTypeECP256, ttl: time.Second},
	}
	for _, tt := range tests {
		c, clk, _ := newCA(t, tt.caKey)
		now := t0.Add(time.Hour)
		clk.Set(now)
		for keyName, key := range leafKeys(t) {
			t.Run(tt.name+"/"+keyName, func(t *testing.T) {
				chain, err := c.SignX509SVID(t.Context(), ca.X509SVIDParams{ID: wlID, PublicKey: key.Public(), TTL: tt.ttl, DNSNames: tt.dnsNames})
				if err != nil {
					t.Fatalf("SignX509SVID: %v", err)
				}
				checkLeaf(t, c, chain, now, leafWant{
					id: wlID, pub: key.Public(), dnsNames: tt.dnsNames, cn: tt.wantCN,
					notBefore: now.Add(-ca.Backdate), notAfter: now.Add(tt.ttl),
				})
				// go-spiffe's parser checks the leaf against its key too.
				certDER := chain[0].Raw
				keyDER, err := x509.MarshalPKCS8PrivateKey(key)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := x509svid.ParseRaw(certDER, keyDER); err != nil {
					t.Errorf("x509svid.ParseRaw: %v", err)
				}
			})
		}
	}
}

func TestSignX509SVIDClamp(t *testing.T) {
	c, clk, _ := newCA(t, ca.KeyTypeECP256)
	root := c.Certificate()
	key := ecKey(t, elliptic.P256())
	tests := []struct {
		name          string
		now           time.Time
		ttl           time.Duration
		wantNotBefore time.Time
		wantNotAfter  time.Time
	}{
		{name: "NotAfter clamped to CA", now: root.NotAfter.Add(-time.Hour), ttl: 24 * time.Hour,
			wantNotBefore: root.NotAfter.Add(-time.Hour - ca.Backdate), wantNotAfter: root.NotAfter},
		{name: "TTL far beyond CA", now: t0, ttl: 100 * 365 * 24 * time.Hour,
			wantNotBefore: t0.Add(-ca.Backdate), wantNotAfter: root.NotAfter},
		{name: "NotBefore not before CA's", now: root.NotBefore.Add(time.Second), ttl: time.Hour,
			wantNotBefore: root.NotBefore, wantNotAfter: root.NotBefore.Add(time.Second + time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk.Set(tt.now)
			chain, err := c.SignX509SVID(t.Context(), ca.X509SVIDParams{ID: wlID, PublicKey: key.Public(), TTL: tt.ttl})
			if err != nil {
				t.Fatal(err)
			}
			checkLeaf(t, c, chain, tt.now, leafWant{id: wlID, pub: key.Public(), notBefore: tt.wantNotBefore, notAfter: tt.wantNotAfter})
		})
	}
}

func TestSignX509SVIDErrors(t *testing.T) {
	c, _, _ := newCA(t, ca.KeyTypeECP256)
	good := ecKey(t, elliptic.P256()).Public()
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	offCurve := ecKey(t, elliptic.P256()).PublicKey
	offCurve.Y = new(big.Int).Add(offCurve.Y, big.NewInt(1))
	manyDNS := make([]string, 65)
	for i := range manyDNS {
		manyDNS[i] = fmt.Sprintf("h%d.example.org", i)
	}
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		p       ca.X509SVIDParams
		wantErr string
	}{
		{name: "zero ID", p: ca.X509SVIDParams{PublicKey: good, TTL: time.Hour}, wantErr: "SPIFFE ID is required"},
		{name: "other trust domain", p: ca.X509SVIDParams{ID: spiffeid.RequireFromString("spiffe://evil.org/web"), PublicKey: good, TTL: time.Hour}, wantErr: `not in trust domain "example.org"`},
		{name: "trust domain ID", p: ca.X509SVIDParams{ID: td.ID(), PublicKey: good, TTL: time.Hour}, wantErr: "has no path"},
		{name: "zero TTL", p: ca.X509SVIDParams{ID: wlID, PublicKey: good}, wantErr: "TTL must be positive"},
		{name: "negative TTL", p: ca.X509SVIDParams{ID: wlID, PublicKey: good, TTL: -time.Second}, wantErr: "TTL must be positive"},
		{name: "nil key", p: ca.X509SVIDParams{ID: wlID, TTL: time.Hour}, wantErr: "missing or unsupported public key"},
		{name: "RSA-1024", p: ca.X509SVIDParams{ID: wlID, PublicKey: rsaKey(t, 1024).Public(), TTL: time.Hour}, wantErr: "1024 bits is too small"},
		{name: "RSA even exponent", p: ca.X509SVIDParams{ID: wlID, PublicKey: &rsa.PublicKey{N: rsaKey(t, 2048).N, E: 65536}, TTL: time.Hour}, wantErr: "exponent 65536 is invalid"},
		{name: "P-224", p: ca.X509SVIDParams{ID: wlID, PublicKey: ecKey(t, elliptic.P224()).Public(), TTL: time.Hour}, wantErr: "curve P-224 is not allowed"},
		{name: "P-521", p: ca.X509SVIDParams{ID: wlID, PublicKey: ecKey(t, elliptic.P521()).Public(), TTL: time.Hour}, wantErr: "curve P-521 is not allowed"},
		{name: "point off curve", p: ca.X509SVIDParams{ID: wlID, PublicKey: &offCurve, TTL: time.Hour}, wantErr: "invalid ECDSA public key"},
		{name: "X25519", p: ca.X509SVIDParams{ID: wlID, PublicKey: x25519.PublicKey(), TTL: time.Hour}, wantErr: "unsupported public key type *ecdh.PublicKey"},
		{name: "private key instead of public", p: ca.X509SVIDParams{ID: wlID, PublicKey: ecKey(t, elliptic.P256()), TTL: time.Hour}, wantErr: "unsupported public key type *ecdsa.PrivateKey"},
		{name: "short Ed25519", p: ca.X509SVIDParams{ID: wlID, PublicKey: edKey(t).Public().(ed25519.PublicKey)[:16], TTL: time.Hour}, wantErr: "Ed25519 public key has 16 bytes"},
		{name: "bad DNS name", p: ca.X509SVIDParams{ID: wlID, PublicKey: good, TTL: time.Hour, DNSNames: []string{"a b"}}, wantErr: "bad character"},
		{name: "too many DNS names", p: ca.X509SVIDParams{ID: wlID, PublicKey: good, TTL: time.Hour, DNSNames: manyDNS}, wantErr: "more than 64 DNS names"},
		{name: "canceled context", ctx: canceled, p: ca.X509SVIDParams{ID: wlID, PublicKey: good, TTL: time.Hour}, wantErr: "context canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := tt.ctx
			if ctx == nil {
				ctx = t.Context()
			}
			chain, err := c.SignX509SVID(ctx, tt.p)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("SignX509SVID() error = %v, want %q", err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "ca: sign X.509-SVID: ") {
				t.Errorf("error %q lacks the prefix", err)
			}
			if chain != nil {
				t.Error("chain returned with an error")
			}
		})
	}
}

// TestCSRIdentityIgnored: a CSR that asks for another SPIFFE ID, DNS names,
// CA=true and certSign gets a leaf carrying only the authorised identity
// (SPIRE CVE-2021-27099).
func TestCSRIdentityIgnored(t *testing.T) {
	c, clk, _ := newCA(t, ca.KeyTypeECP256)
	bcCA, err := asn1.Marshal(struct {
		IsCA       bool
		MaxPathLen int
	}{true, 5})
	if err != nil {
		t.Fatal(err)
	}
	kuCertSign, err := asn1.Marshal(asn1.BitString{Bytes: []byte{0x06}, BitLength: 7}) // keyCertSign|cRLSign
	if err != nil {
		t.Fatal(err)
	}
	evilID, _ := url.Parse("spiffe://example.org/admin")
	otherTD, _ := url.Parse("spiffe://evil.org/root")
	tests := []struct {
		name string
		tmpl *x509.CertificateRequest
	}{
		{name: "other SPIFFE IDs", tmpl: &x509.CertificateRequest{URIs: []*url.URL{evilID, otherTD}}},
		{name: "DNS, email and IP SANs", tmpl: &x509.CertificateRequest{DNSNames: []string{"bank.example.com"}, EmailAddresses: []string{"a@b.c"}}},
		{name: "subject", tmpl: &x509.CertificateRequest{Subject: pkix.Name{CommonName: "spiffe://example.org/admin", Organization: []string{"Evil"}}}},
		{name: "CA=true and certSign", tmpl: &x509.CertificateRequest{ExtraExtensions: []pkix.Extension{
			{Id: oidBasicConstraints, Critical: true, Value: bcCA},
			{Id: oidKeyUsage, Critical: true, Value: kuCertSign},
		}}},
		{name: "unknown critical extension", tmpl: &x509.CertificateRequest{ExtraExtensions: []pkix.Extension{
			{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Critical: true, Value: []byte{5, 0}},
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := ecKey(t, elliptic.P256())
			csr, err := ca.ParseCSR(makeCSR(t, key, tt.tmpl))
			if err != nil {
				t.Fatalf("ParseCSR: %v", err)
			}
			chain, err := c.SignX509SVID(t.Context(), ca.X509SVIDParams{ID: wlID, PublicKey: csr.PublicKey, TTL: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			checkLeaf(t, c, chain, clk.Now(), leafWant{id: wlID, pub: key.Public(), notBefore: t0.Add(-ca.Backdate), notAfter: t0.Add(time.Hour)})
		})
	}
}

func TestSignConcurrent(t *testing.T) {
	c, _, _ := newCA(t, ca.KeyTypeECP256)
	const workers, each = 8, 25
	var (
		mu      sync.Mutex
		serials = map[string]bool{}
		wg      sync.WaitGroup
	)
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			key := ecKey(t, elliptic.P256()).Public()
			id := spiffeid.RequireFromPathf(td, "/w/%d", w)
			for range each {
				chain, err := c.SignX509SVID(context.Background(), ca.X509SVIDParams{ID: id, PublicKey: key, TTL: time.Hour})
				if err != nil {
					errs <- err
					return
				}
				if got := chain[0].URIs[0].String(); got != id.String() {
					errs <- fmt.Errorf("leaf for %s carries %s", id, got)
					return
				}
				mu.Lock()
				serials[chain[0].SerialNumber.String()] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(serials) != workers*each {
		t.Errorf("%d distinct serials, want %d", len(serials), workers*each)
	}
}
