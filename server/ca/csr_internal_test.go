package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"reflect"
	"testing"
)

// The agent's CSR (agent/manager writes the bytes
// x509.CreateCertificateRequest writes for a P-256 key and an empty
// template: TestCSRMatchesStdlib) takes ParseCSR's fast path, and the
// result is the standard library's, field for field; every other shape,
// and every broken one, is left to the standard library.
func TestParseCSRFastPathMatchesStdlib(t *testing.T) {
	for range 50 { // signatures of different lengths
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
		if err != nil {
			t.Fatal(err)
		}
		fast := parseMinimalP256CSR(der)
		if fast == nil {
			t.Fatalf("minimal P-256 CSR not recognised: %x", der)
		}
		want, err := x509.ParseCertificateRequest(der)
		if err != nil {
			t.Fatal(err)
		}
		if !key.PublicKey.Equal(fast.PublicKey) || !want.PublicKey.(*ecdsa.PublicKey).Equal(fast.PublicKey) {
			t.Fatal("public key differs")
		}
		got, ref := *fast, *want
		got.PublicKey, ref.PublicKey = nil, nil
		if !reflect.DeepEqual(got, ref) {
			t.Fatalf("fast path result differs from x509.ParseCertificateRequest's\n got %+v\nwant %+v", got, ref)
		}
		viaParse, err := ParseCSR(der)
		if err != nil || !key.PublicKey.Equal(viaParse.PublicKey) {
			t.Fatalf("ParseCSR: %v", err)
		}
	}

	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	csr := func(key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
		der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	good := csr(p256, &x509.CertificateRequest{})
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 0x01
		return b
	}
	pointAt := bytes.Index(good, spkiP256Head) + len(spkiP256Head)
	offCurve := bytes.Clone(good)
	offCurve[pointAt+64] ^= 0x01 // last byte of Y
	for name, der := range map[string][]byte{
		"P-384 key":         csr(p384, &x509.CertificateRequest{}),
		"Ed25519 key":       csr(ed, &x509.CertificateRequest{}),
		"subject":           csr(p256, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}),
		"DNS SAN":           csr(p256, &x509.CertificateRequest{DNSNames: []string{"x"}}),
		"ECDSA-SHA384":      csr(p256, &x509.CertificateRequest{SignatureAlgorithm: x509.ECDSAWithSHA384}),
		"bad signature":     flip(len(good) - 1),
		"version 1":         flip(7),
		"point off curve":   offCurve,
		"trailing data":     append(bytes.Clone(good), 0),
		"truncated":         good[:len(good)-1],
		"outer length":      flip(2),
		"unused bits":       flip(3 + minimalCSRInfoLen + len(algECDSAWithSHA256) + 2),
		"attributes length": flip(3 + minimalCSRInfoLen - 1),
	} {
		if parseMinimalP256CSR(der) != nil {
			t.Errorf("%s: took the fast path", name)
		}
		_, stdErr := x509.ParseCertificateRequest(der)
		_, err := ParseCSR(der)
		if name == "P-384 key" || name == "Ed25519 key" || name == "subject" || name == "DNS SAN" || name == "ECDSA-SHA384" {
			if err != nil {
				t.Errorf("%s: ParseCSR refused a valid CSR: %v", name, err)
			}
		} else if err == nil {
			t.Errorf("%s: ParseCSR accepted it (x509 parse error: %v)", name, stdErr)
		}
	}
}
