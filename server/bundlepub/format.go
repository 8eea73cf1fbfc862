package bundlepub

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Format is how a published bundle is encoded.
type Format string

// Formats.
const (
	// FormatPEM is a concatenation of PEM CERTIFICATE blocks.
	FormatPEM Format = "pem"
	// FormatSPIFFE is a SPIFFE bundle (JWKS, "use": "x509-svid" keys with
	// their certificate in x5c), without sequence number or refresh hint.
	FormatSPIFFE Format = "spiffe"
)

// ParseFormat checks s ("" means FormatPEM).
func ParseFormat(s string) (Format, error) {
	switch Format(s) {
	case "", FormatPEM:
		return FormatPEM, nil
	case FormatSPIFFE:
		return FormatSPIFFE, nil
	}
	return "", fmt.Errorf("bundlepub: format %q is not \"pem\" or \"spiffe\"", s)
}

// Encode encodes the authorities of trust domain td in format f, sorted by
// NotBefore then DER so that equal sets give equal bytes.
func Encode(td spiffeid.TrustDomain, certs []*x509.Certificate, f Format) ([]byte, error) {
	if len(certs) == 0 {
		return nil, errors.New("bundlepub: the bundle is empty")
	}
	sorted := slices.Clone(certs)
	slices.SortFunc(sorted, func(a, b *x509.Certificate) int {
		if c := a.NotBefore.Compare(b.NotBefore); c != 0 {
			return c
		}
		return bytes.Compare(a.Raw, b.Raw)
	})
	sorted = slices.CompactFunc(sorted, func(a, b *x509.Certificate) bool { return a.Equal(b) })
	switch f {
	case FormatPEM, "":
		var buf bytes.Buffer
		for _, c := range sorted {
			if err := pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}); err != nil {
				return nil, fmt.Errorf("bundlepub: %w", err)
			}
		}
		return buf.Bytes(), nil
	case FormatSPIFFE:
		b := spiffebundle.New(td)
		b.SetX509Authorities(sorted)
		out, err := b.Marshal()
		if err != nil {
			return nil, fmt.Errorf("bundlepub: %w", err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("bundlepub: unknown format %q", f)
}
