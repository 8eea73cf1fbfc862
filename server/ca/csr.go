package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
)

// MaxCSRSize is the largest DER CSR ParseCSR accepts.
const MaxCSRSize = 64 << 10

// ParseCSR parses an untrusted DER certificate signing request. It accepts
// only ECDSA P-256/P-384, RSA 2048–4096-bit and Ed25519 subject keys, and a
// valid self-signature (proof of possession). The key type is checked before
// the signature so that oversized keys cost nothing to reject.
//
// Only the public key of the result may be used: the subject, SANs and
// extensions of a CSR are attacker-chosen and the CA ignores them.
//
// The CSR every agent sends (a P-256 key and nothing else, as
// x509.CreateCertificateRequest writes it for an empty template) is
// recognised byte for byte and its key and self-signature checked without
// x509.ParseCertificateRequest's reflection-based decoding; the result is
// the one that function gives (TestParseCSRFastPathMatchesStdlib,
// FuzzParseCSR). Anything else, and anything that fails there, goes
// through x509.ParseCertificateRequest.
func ParseCSR(der []byte) (*x509.CertificateRequest, error) {
	if len(der) == 0 {
		return nil, fmt.Errorf("ca: parse CSR: empty")
	}
	if len(der) > MaxCSRSize {
		return nil, fmt.Errorf("ca: parse CSR: %d bytes is too large (maximum %d)", len(der), MaxCSRSize)
	}
	if csr := parseMinimalP256CSR(der); csr != nil {
		return csr, nil
	}
	return parseCSRStdlib(der)
}

// parseCSRStdlib is ParseCSR with the standard library's parser alone.
func parseCSRStdlib(der []byte) (*x509.CertificateRequest, error) {
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("ca: parse CSR: malformed: %w", err)
	}
	if err := validatePublicKey(csr.PublicKey); err != nil {
		return nil, fmt.Errorf("ca: parse CSR: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("ca: parse CSR: bad self-signature: %w", err)
	}
	return csr, nil
}

// The minimal P-256 CSR, in DER:
//
//	CertificationRequest ::= SEQUENCE {                     30 81 len
//	  certificationRequestInfo SEQUENCE {                   30 62
//	    version INTEGER 0, subject SEQUENCE {},             02 01 00 30 00
//	    subjectPKInfo (id-ecPublicKey, prime256v1, point),  30 59 ... 03 42 00 <65 bytes>
//	    attributes [0] {} },                                a0 00
//	  signatureAlgorithm ecdsa-with-SHA256,                 30 0a ...
//	  signature BIT STRING }                                03 len 00 <ECDSA-Sig-Value>
var (
	minimalCSRInfoHead = append([]byte{0x30, 0x62, 0x02, 0x01, 0x00, 0x30, 0x00}, spkiP256Head...)
	csrNoAttributes    = []byte{0xa0, 0x00}
)

const (
	minimalCSRInfoLen = 0x64 // the certificationRequestInfo SEQUENCE, header included
	p256PointLen      = 65
)

// parseMinimalP256CSR returns the parsed CSR when der is exactly the
// minimal P-256 CSR with a key on the curve and a valid self-signature,
// and nil otherwise (ParseCSR then decides with the standard library).
func parseMinimalP256CSR(der []byte) *x509.CertificateRequest {
	// Outer SEQUENCE with a one-byte long-form length covering the rest.
	if len(der) < 3 || der[0] != 0x30 || der[1] != 0x81 || int(der[2]) != len(der)-3 || der[2] < 0x80 {
		return nil
	}
	body := der[3:]
	if len(body) < minimalCSRInfoLen+len(algECDSAWithSHA256)+3 {
		return nil
	}
	info := body[:minimalCSRInfoLen]
	if !bytes.HasPrefix(info, minimalCSRInfoHead) || !bytes.Equal(info[len(info)-2:], csrNoAttributes) {
		return nil
	}
	point := info[len(minimalCSRInfoHead) : len(minimalCSRInfoHead)+p256PointLen]
	rest := body[minimalCSRInfoLen:]
	if !bytes.HasPrefix(rest, algECDSAWithSHA256) {
		return nil
	}
	bits := rest[len(algECDSAWithSHA256):]
	if len(bits) < 3 || bits[0] != 0x03 || int(bits[1]) != len(bits)-2 || bits[1] >= 0x80 || bits[2] != 0 {
		return nil
	}
	sig := bits[3:]
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil {
		return nil
	}
	digest := sha256.Sum256(info)
	if !ecdsa.VerifyASN1(pub, digest[:], sig) {
		return nil
	}
	spkiStart := len(minimalCSRInfoHead) - len(spkiP256Head)
	return &x509.CertificateRequest{
		Raw:                      der,
		RawTBSCertificateRequest: info,
		RawSubjectPublicKeyInfo:  info[spkiStart : spkiStart+len(spkiP256Head)+p256PointLen],
		RawSubject:               info[5:7],
		Signature:                sig,
		SignatureAlgorithm:       x509.ECDSAWithSHA256,
		PublicKeyAlgorithm:       x509.ECDSA,
		PublicKey:                pub,
	}
}
