package ca

import (
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
func ParseCSR(der []byte) (*x509.CertificateRequest, error) {
	if len(der) == 0 {
		return nil, fmt.Errorf("ca: parse CSR: empty")
	}
	if len(der) > MaxCSRSize {
		return nil, fmt.Errorf("ca: parse CSR: %d bytes is too large (maximum %d)", len(der), MaxCSRSize)
	}
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
