package manager

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
)

// NewKeyAndCSR generates a P-256 key and a minimal CSR for it; the server
// decides the SPIFFE ID, so the CSR carries none.
//
// The CSR is written directly rather than by x509.CreateCertificateRequest,
// which verifies the signature it just made (a guard against a faulty
// crypto.Signer such as an HSM): for a key generated in this process a
// second ECDSA operation that doubled the cost of every workload key. The
// bytes are those x509.CreateCertificateRequest writes for an empty
// template (TestCSRMatchesStdlib); the server parses and checks every CSR.
func NewKeyAndCSR() (crypto.Signer, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("manager: generate key: %w", err)
	}
	csr, err := p256CSR(key)
	if err != nil {
		return nil, nil, err
	}
	return key, csr, nil
}

// DER for a P-256 CSR with an empty subject and no attributes:
//
//	CertificationRequest ::= SEQUENCE {
//	  certificationRequestInfo SEQUENCE {
//	    version INTEGER 0, subject SEQUENCE {}, subjectPKInfo, attributes [0] {} },
//	  signatureAlgorithm SEQUENCE { ecdsa-with-SHA256 },
//	  signature BIT STRING }
var (
	// version 0 and the empty subject.
	csrInfoHead = []byte{0x02, 0x01, 0x00, 0x30, 0x00}
	// SubjectPublicKeyInfo up to the point: id-ecPublicKey, prime256v1,
	// BIT STRING of 66 bytes (no unused bits, then the 65-byte point).
	p256SPKIHead = []byte{
		0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
		0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
	}
	// attributes [0] IMPLICIT SET OF, empty.
	csrNoAttributes = []byte{0xa0, 0x00}
	// AlgorithmIdentifier ecdsa-with-SHA256 (no parameters).
	ecdsaWithSHA256 = []byte{0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02}
)

// p256CSR returns the DER CSR of key, signed with ECDSA-SHA256.
func p256CSR(key *ecdsa.PrivateKey) ([]byte, error) {
	point, err := key.PublicKey.Bytes()
	if err != nil || len(point) != 65 || key.Curve != elliptic.P256() {
		return nil, errors.New("manager: create CSR: not a P-256 key")
	}
	info := make([]byte, 0, 2+len(csrInfoHead)+len(p256SPKIHead)+len(point)+len(csrNoAttributes))
	info = appendHeader(info, 0x30, len(csrInfoHead)+len(p256SPKIHead)+len(point)+len(csrNoAttributes))
	info = append(info, csrInfoHead...)
	info = append(info, p256SPKIHead...)
	info = append(info, point...)
	info = append(info, csrNoAttributes...)

	digest := sha256.Sum256(info)
	sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		return nil, fmt.Errorf("manager: create CSR: %w", err)
	}
	bodyLen := len(info) + len(ecdsaWithSHA256) + headerLen(len(sig)+1) + len(sig) + 1
	out := make([]byte, 0, headerLen(bodyLen)+bodyLen)
	out = appendHeader(out, 0x30, bodyLen)
	out = append(out, info...)
	out = append(out, ecdsaWithSHA256...)
	out = appendHeader(out, 0x03, len(sig)+1)
	out = append(out, 0x00) // no unused bits
	return append(out, sig...), nil
}

// appendHeader appends a DER tag and definite length (below 64 KiB).
func appendHeader(b []byte, tag byte, n int) []byte {
	switch {
	case n < 0x80:
		return append(b, tag, byte(n))
	case n <= 0xff:
		return append(b, tag, 0x81, byte(n))
	default:
		return append(b, tag, 0x82, byte(n>>8), byte(n))
	}
}

// headerLen is the length of appendHeader's output for n.
func headerLen(n int) int {
	switch {
	case n < 0x80:
		return 2
	case n <= 0xff:
		return 3
	default:
		return 4
	}
}

// newKeyDERAndCSR is NewKeyAndCSR with the key in PKCS#8 form.
func newKeyDERAndCSR() (keyDER, csr []byte, err error) {
	key, csr, err := NewKeyAndCSR()
	if err != nil {
		return nil, nil, err
	}
	keyDER, err = x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("manager: marshal key: %w", err)
	}
	return keyDER, csr, nil
}
