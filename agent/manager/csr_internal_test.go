package manager

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"testing"
)

// The hand-written CSR is the one the standard library writes for the same
// key and an empty template, byte for byte up to the signature (ECDSA
// signatures are randomised), and it parses and verifies.
func TestCSRMatchesStdlib(t *testing.T) {
	for range 50 { // signatures of different lengths (DER integers)
		signer, der, err := NewKeyAndCSR()
		if err != nil {
			t.Fatal(err)
		}
		key := signer.(*ecdsa.PrivateKey)
		csr, err := x509.ParseCertificateRequest(der)
		if err != nil {
			t.Fatalf("parse: %v", err)
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("signature: %v", err)
		}
		if !key.PublicKey.Equal(csr.PublicKey) || csr.SignatureAlgorithm != x509.ECDSAWithSHA256 {
			t.Fatalf("key or algorithm differ: %v", csr.SignatureAlgorithm)
		}
		if len(csr.Subject.Names) != 0 || len(csr.Extensions) != 0 || len(csr.URIs) != 0 || len(csr.DNSNames) != 0 {
			t.Fatalf("CSR carries more than a key: %+v", csr)
		}
		ref, err := x509.CreateCertificateRequest(nil, &x509.CertificateRequest{}, key)
		if err != nil {
			t.Fatal(err)
		}
		want, err := x509.ParseCertificateRequest(ref)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(csr.RawTBSCertificateRequest, want.RawTBSCertificateRequest) {
			t.Fatalf("certificationRequestInfo\n got %x\nwant %x", csr.RawTBSCertificateRequest, want.RawTBSCertificateRequest)
		}
		if !bytes.Equal(der[len(der)-len(csr.Signature)-3-len(ecdsaWithSHA256):len(der)-len(csr.Signature)-3], ecdsaWithSHA256) {
			t.Fatalf("signature algorithm bytes differ: %x", der)
		}
	}
}

func BenchmarkNewKeyAndCSR(b *testing.B) {
	for b.Loop() {
		if _, _, err := newKeyDERAndCSR(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNewKeyAndCSRStdlib is the same with x509.CreateCertificateRequest,
// for the ratio (it verifies its own signature).
func BenchmarkNewKeyAndCSRStdlib(b *testing.B) {
	for b.Loop() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key); err != nil {
			b.Fatal(err)
		}
		if _, err := x509.MarshalPKCS8PrivateKey(key); err != nil {
			b.Fatal(err)
		}
	}
}
