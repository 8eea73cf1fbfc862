package ca_test

import (
	"bytes"
	"crypto"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/server/ca"
)

// validCSRs returns well-formed CSRs of every accepted key type.
func validCSRs(t testing.TB) map[string][]byte {
	m := map[string][]byte{"rsa-4096 (openssl)": readFixture(t, "csr-rsa-4096.der")}
	for name, key := range leafKeys(t) {
		m[name] = makeCSR(t, key, nil)
	}
	return m
}

func TestParseCSRAccepts(t *testing.T) {
	for name, der := range validCSRs(t) {
		t.Run(name, func(t *testing.T) {
			csr, err := ca.ParseCSR(der)
			if err != nil {
				t.Fatalf("ParseCSR: %v", err)
			}
			if csr.PublicKey == nil {
				t.Fatal("no public key")
			}
		})
	}
}

func TestParseCSRRejects(t *testing.T) {
	good := makeCSR(t, ecKey(t, elliptic.P256()), nil)
	badSig := bytes.Clone(good)
	badSig[len(badSig)-1] ^= 0x01
	// A CSR whose self-signature was made by a different key.
	otherKey := makeCSR(t, ecKey(t, elliptic.P256()), nil)
	swapped := swapPublicKey(t, otherKey, good)
	// A valid CSR with enough DNS SANs to exceed the size limit.
	names := make([]string, 1000)
	for i := range names {
		names[i] = strings.Repeat("b", 60) + ".example.org"
	}
	huge := makeCSR(t, ecKey(t, elliptic.P256()), &x509.CertificateRequest{DNSNames: names})
	if len(huge) <= ca.MaxCSRSize {
		t.Fatalf("huge CSR is only %d bytes", len(huge))
	}
	tests := []struct {
		name    string
		der     []byte
		wantErr string
	}{
		{name: "empty", der: nil, wantErr: "empty"},
		{name: "over 64 KiB", der: huge, wantErr: "is too large (maximum 65536)"},
		{name: "garbage", der: []byte("hello, world"), wantErr: "malformed"},
		{name: "truncated", der: good[:len(good)-10], wantErr: "malformed"},
		{name: "trailing data", der: append(bytes.Clone(good), 0), wantErr: "malformed"},
		{name: "PEM instead of DER", der: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: good}), wantErr: "malformed"},
		{name: "certificate instead of CSR", der: selfSignedCert(t), wantErr: "malformed"},
		{name: "bad self-signature", der: badSig, wantErr: "bad self-signature"},
		{name: "signed by another key", der: swapped, wantErr: "bad self-signature"},
		{name: "RSA-1024", der: readFixture(t, "csr-rsa-1024.der"), wantErr: "RSA key of 1024 bits is too small"},
		{name: "RSA-4104", der: readFixture(t, "csr-rsa-4104.der"), wantErr: "RSA key of 4104 bits is too large"},
		{name: "P-521", der: readFixture(t, "csr-ec-p521.der"), wantErr: "curve P-521 is not allowed"},
		{name: "P-224", der: makeCSR(t, ecKey(t, elliptic.P224()), nil), wantErr: "curve P-224 is not allowed"},
		{name: "secp256k1", der: readFixture(t, "csr-ec-secp256k1.der"), wantErr: "unsupported elliptic curve"},
		{name: "DSA", der: readFixture(t, "csr-dsa-2048.der"), wantErr: "unsupported public key type *dsa.PublicKey"},
		{name: "Ed448", der: readFixture(t, "csr-ed448.der"), wantErr: "missing or unsupported public key algorithm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csr, err := ca.ParseCSR(tt.der)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseCSR() error = %v, want %q", err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "ca: parse CSR: ") {
				t.Errorf("error %q lacks the prefix", err)
			}
			if csr != nil {
				t.Error("CSR returned with an error")
			}
		})
	}
}

// swapPublicKey returns sigFrom with its SubjectPublicKeyInfo replaced by
// keyFrom's: the signature no longer matches the key.
func swapPublicKey(t testing.TB, keyFrom, sigFrom []byte) []byte {
	t.Helper()
	a, err := x509.ParseCertificateRequest(keyFrom)
	if err != nil {
		t.Fatal(err)
	}
	b, err := x509.ParseCertificateRequest(sigFrom)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.RawSubjectPublicKeyInfo) != len(b.RawSubjectPublicKeyInfo) {
		t.Fatal("SPKI lengths differ")
	}
	out := bytes.Clone(sigFrom)
	i := bytes.Index(out, b.RawSubjectPublicKeyInfo)
	copy(out[i:], a.RawSubjectPublicKeyInfo)
	return out
}

func selfSignedCert(t testing.TB) []byte {
	t.Helper()
	c, _, _ := newCA(t, ca.KeyTypeECP256)
	return c.Certificate().Raw
}

// FuzzParseCSR: ParseCSR never panics, whatever it accepts carries a key
// the CA will sign and a valid self-signature, and it accepts exactly what
// x509.ParseCertificateRequest, the key check and CheckSignature accept,
// with the same key (its fast path for the agent's minimal P-256 CSR
// included: seeded with that shape and mutations of it).
func FuzzParseCSR(f *testing.F) {
	minimal := makeCSR(f, ecKey(f, elliptic.P256()), &x509.CertificateRequest{})
	for i := range len(minimal) {
		b := bytes.Clone(minimal)
		b[i] ^= 0x01
		f.Add(b)
	}
	f.Add(minimal)
	for _, der := range validCSRs(f) {
		f.Add(der)
		f.Add(der[:len(der)/2])
		broken := bytes.Clone(der)
		broken[len(broken)-1] ^= 0xff
		f.Add(broken)
	}
	for _, name := range []string{"csr-rsa-1024.der", "csr-rsa-4104.der", "csr-ec-p521.der", "csr-ec-secp256k1.der", "csr-dsa-2048.der", "csr-ed448.der"} {
		f.Add(readFixture(f, name))
	}
	f.Add([]byte{})
	f.Add([]byte{0x30, 0x80, 0x00, 0x00}) // indefinite length
	f.Add([]byte{0x30, 0x84, 0xff, 0xff, 0xff, 0xff})

	clk := &fixedClock{now: t0}
	c, err := ca.New(ca.Config{TrustDomain: td, Dir: f.TempDir() + "/ca", Clock: clk.Now})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		csr, err := ca.ParseCSR(der)
		if err != nil {
			if csr != nil {
				t.Fatal("CSR returned with an error")
			}
			if len(der) <= ca.MaxCSRSize {
				if ref, refErr := x509.ParseCertificateRequest(der); refErr == nil && ref.CheckSignature() == nil {
					if _, signErr := c.SignX509SVID(t.Context(), ca.X509SVIDParams{ID: wlID, PublicKey: ref.PublicKey, TTL: time.Hour}); signErr == nil {
						t.Fatalf("refused a CSR x509 accepts, with a key the CA signs: %v", err)
					}
				}
			}
			return
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("accepted CSR with bad signature: %v", err)
		}
		ref, err := x509.ParseCertificateRequest(der)
		if err != nil {
			t.Fatalf("accepted a CSR x509 refuses: %v", err)
		}
		if pub, ok := ref.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(csr.PublicKey) {
			t.Fatal("key differs from x509's")
		}
		chain, err := c.SignX509SVID(t.Context(), ca.X509SVIDParams{ID: wlID, PublicKey: csr.PublicKey, TTL: time.Hour})
		if err != nil {
			t.Fatalf("accepted CSR whose key the CA refuses: %v", err)
		}
		if len(chain[0].URIs) != 1 || chain[0].URIs[0].String() != wlID.String() || len(chain[0].DNSNames) != 0 {
			t.Fatalf("leaf carries identity from the CSR: %v %v", chain[0].URIs, chain[0].DNSNames)
		}
		if pub, ok := chain[0].PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(csr.PublicKey) {
			t.Fatal("leaf key differs from the CSR key")
		}
	})
}
