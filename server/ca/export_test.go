package ca

import (
	"context"
	"crypto/x509"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Schedule exposes the rotation schedule to the external tests.
var Schedule = schedule

// DecodeState exposes the parser of the (shared, untrusted) state document.
func DecodeState(data []byte, td spiffeid.TrustDomain) error {
	_, err := decodeState(data, td, nil)
	return err
}

// ParseCertsPEM exposes the parser of upstream certificate and bundle files.
func ParseCertsPEM(data []byte) (int, error) {
	certs, err := parseCertsPEM(data)
	return len(certs), err
}

// SignX509SVIDStdlib is SignX509SVID as it was before the direct signer:
// x509.CreateCertificate (with its check of the signature it made), then
// the certificate parsed back. For benchmarks side by side.
func (ca *CA) SignX509SVIDStdlib(ctx context.Context, p X509SVIDParams) ([]*x509.Certificate, error) {
	a, _, der, err := ca.sign(ctx, p, false)
	if err != nil {
		return nil, err
	}
	return parsedChain(a, der)
}

// ParseCSRStdlib is ParseCSR without the fast path for the minimal P-256
// CSR, as it was before it. For benchmarks side by side.
func ParseCSRStdlib(der []byte) (*x509.CertificateRequest, error) {
	if len(der) == 0 || len(der) > MaxCSRSize {
		return ParseCSR(der)
	}
	return parseCSRStdlib(der)
}
