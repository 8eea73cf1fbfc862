package federation

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// MaxBundleSize bounds a bundle document, fetched or read from a file.
// Larger documents are rejected unread.
const MaxBundleSize = 1 << 20

// maxHintSeconds caps spiffe_refresh_hint before it becomes a Duration so
// that a huge value cannot overflow; refresh scheduling clamps it further.
const maxHintSeconds = 365 * 24 * 60 * 60

// ParseBundle parses data, a SPIFFE bundle document, as the bundle of td
// and checks it: at most MaxBundleSize bytes, one JSON object with a
// "keys" array (an empty array is a valid, empty bundle: revocation), every
// x509-svid key a single certificate, and no X.509 authority carrying a
// SPIFFE ID of another trust domain (the mark of a bundle served for the
// wrong trust domain). A negative spiffe_refresh_hint reads as 0, a huge
// one as a year.
func ParseBundle(td spiffeid.TrustDomain, data []byte) (*spiffebundle.Bundle, error) {
	if td.IsZero() {
		return nil, errors.New("federation: parse bundle: no trust domain")
	}
	if len(data) > MaxBundleSize {
		return nil, fmt.Errorf("federation: parse bundle: %d bytes is larger than the limit of %d", len(data), MaxBundleSize)
	}
	// spiffebundle.Parse turns the hint into a Duration unchecked; read it
	// here as a number first.
	var head struct {
		Keys        json.RawMessage `json:"keys"`
		RefreshHint *int64          `json:"spiffe_refresh_hint"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("federation: parse bundle: %w", err)
	}
	if t := bytes.TrimSpace(data); len(t) == 0 || t[0] != '{' {
		return nil, errors.New("federation: parse bundle: not a JSON object")
	}
	if k := bytes.TrimSpace(head.Keys); len(k) == 0 || k[0] != '[' {
		return nil, errors.New(`federation: parse bundle: "keys" must be an array`)
	}
	b, err := spiffebundle.Parse(td, data)
	if err != nil {
		return nil, fmt.Errorf("federation: parse bundle: %w", err)
	}
	if head.RefreshHint != nil {
		b.SetRefreshHint(time.Duration(min(max(*head.RefreshHint, 0), maxHintSeconds)) * time.Second)
	}
	if err := checkAuthorities(td, b.X509Authorities()); err != nil {
		return nil, fmt.Errorf("federation: parse bundle: %w", err)
	}
	return b, nil
}

// checkAuthorities returns an error when an authority carries a SPIFFE ID
// URI of a trust domain other than td. Authorities without one (such as an
// upstream corporate root) pass.
func checkAuthorities(td spiffeid.TrustDomain, certs []*x509.Certificate) error {
	for i, c := range certs {
		for _, u := range c.URIs {
			if u.Scheme != "spiffe" {
				continue
			}
			id, err := spiffeid.FromURI(u)
			if err != nil || id.TrustDomain() != td {
				return fmt.Errorf("X.509 authority %d (%s) names %q, not trust domain %q", i, c.Subject, u.String(), td.Name())
			}
		}
	}
	return nil
}

// Bundle file formats for LoadBundleFile.
const (
	FormatSPIFFE = "spiffe" // a SPIFFE bundle document (JWKS)
	FormatPEM    = "pem"    // concatenated PEM CERTIFICATE blocks
)

// LoadBundleFile reads the bundle of td from path, in format FormatSPIFFE
// or FormatPEM, or "" to tell them apart by the first non-blank byte ('{'
// for a SPIFFE bundle). It is checked as ParseBundle checks a fetched one.
func LoadBundleFile(td spiffeid.TrustDomain, path, format string) (*spiffebundle.Bundle, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("federation: trust bundle: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxBundleSize+1))
	if err != nil {
		return nil, fmt.Errorf("federation: trust bundle %s: %w", path, err)
	}
	if len(data) > MaxBundleSize {
		return nil, fmt.Errorf("federation: trust bundle %s is larger than %d bytes", path, MaxBundleSize)
	}
	if format == "" {
		format = FormatPEM
		if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '{' {
			format = FormatSPIFFE
		}
	}
	switch format {
	case FormatSPIFFE:
		b, err := ParseBundle(td, data)
		if err != nil {
			return nil, fmt.Errorf("federation: trust bundle %s: %w", path, err)
		}
		return b, nil
	case FormatPEM:
		var certs []*x509.Certificate
		for rest := data; ; {
			var blk *pem.Block
			blk, rest = pem.Decode(rest)
			if blk == nil {
				break
			}
			if blk.Type != "CERTIFICATE" {
				return nil, fmt.Errorf("federation: trust bundle %s: unexpected PEM block %q", path, blk.Type)
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("federation: trust bundle %s: %w", path, err)
			}
			certs = append(certs, c)
		}
		if len(certs) == 0 {
			return nil, fmt.Errorf("federation: trust bundle %s: no PEM certificates", path)
		}
		if err := checkAuthorities(td, certs); err != nil {
			return nil, fmt.Errorf("federation: trust bundle %s: %w", path, err)
		}
		return spiffebundle.FromX509Authorities(td, certs), nil
	default:
		return nil, fmt.Errorf("federation: trust bundle format %q is not %q or %q", format, FormatSPIFFE, FormatPEM)
	}
}

type bundleDoc struct {
	Keys           []jose.JSONWebKey `json:"keys"`
	SequenceNumber *uint64           `json:"spiffe_sequence,omitempty"`
	RefreshHint    *int64            `json:"spiffe_refresh_hint,omitempty"`
}

// MarshalBundle encodes b as a SPIFFE bundle document. Unlike
// spiffebundle's Marshal it writes an empty bundle as "keys": [] (which
// ParseBundle accepts) and orders JWT keys by key ID, so equal bundles give
// equal bytes.
func MarshalBundle(b *spiffebundle.Bundle) ([]byte, error) {
	doc := bundleDoc{Keys: []jose.JSONWebKey{}}
	if seq, ok := b.SequenceNumber(); ok {
		doc.SequenceNumber = &seq
	}
	if hint, ok := b.RefreshHint(); ok {
		s := int64((hint + time.Second - 1) / time.Second)
		doc.RefreshHint = &s
	}
	doc.Keys = appendKeys(doc.Keys, b.X509Authorities(), b.JWTAuthorities())
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("federation: marshal bundle: %w", err)
	}
	return out, nil
}

func appendKeys(keys []jose.JSONWebKey, certs []*x509.Certificate, jwt map[string]crypto.PublicKey) []jose.JSONWebKey {
	for _, c := range certs {
		keys = append(keys, jose.JSONWebKey{Key: c.PublicKey, Certificates: []*x509.Certificate{c}, Use: "x509-svid"})
	}
	for _, kid := range slices.Sorted(maps.Keys(jwt)) {
		keys = append(keys, jose.JSONWebKey{Key: jwt[kid], KeyID: kid, Use: "jwt-svid"})
	}
	return keys
}

// sameKeys reports whether a and b hold the same X.509 and JWT authorities,
// whatever their sequence numbers and refresh hints.
func sameKeys(a, b *spiffebundle.Bundle) bool {
	return a.X509Bundle().Equal(b.X509Bundle()) && a.JWTBundle().Equal(b.JWTBundle())
}
