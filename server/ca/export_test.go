package ca

import "github.com/spiffe/go-spiffe/v2/spiffeid"

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
