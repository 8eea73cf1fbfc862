package ca

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/server/authority"
)

// issuer is one CA signing key and its certificate, the key kind of the
// rotation engine (server/authority). It is immutable once published.
type issuer struct {
	id     string // first 16 hex digits of the SHA-256 of the certificate
	signer crypto.Signer
	cert   *x509.Certificate
	// chain follows the leaf in an SVID chain: empty for a self-signed
	// root; the intermediate and the upstream's intermediates otherwise.
	chain []*x509.Certificate
	// root reports whether cert is self-signed (a trust anchor itself).
	root bool
}

// entry is an issuer and its history on this server (published, activated,
// tainted).
type entry = authority.Entry[*issuer]

func authorityID(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:8])
}

// ID returns the authority ID.
func (a *issuer) ID() string { return a.id }

// NotBefore returns the start of the certificate's validity.
func (a *issuer) NotBefore() time.Time { return a.cert.NotBefore }

// NotAfter returns the end of the certificate's validity.
func (a *issuer) NotAfter() time.Time { return a.cert.NotAfter }

// bundleOf computes the trust anchors: the self-signed authorities the CA
// holds (the active one always, others until they expire), then, with an
// upstream, the upstream roots. It also returns the digest of the bundle
// and of which unexpired authorities are tainted, so that tainting one
// counts as a bundle change (agents are told to re-mint).
func bundleOf(active, next *entry, old []*entry, up *upstream, now time.Time) ([]*x509.Certificate, string) {
	var certs []*x509.Certificate
	add := func(e *entry) {
		if e != nil && e.Key.root {
			certs = append(certs, e.Key.cert)
		}
	}
	if up != nil {
		certs = append(certs, up.roots...)
	}
	add(active)
	if next != nil && !next.Expired(now) {
		add(next)
	}
	for _, e := range old {
		if !e.Expired(now) {
			add(e)
		}
	}
	// Dedupe (an upstream root could in theory also be held).
	var out []*x509.Certificate
	for _, c := range certs {
		if !slices.ContainsFunc(out, c.Equal) {
			out = append(out, c)
		}
	}
	var tainted []string
	for _, e := range append([]*entry{active, next}, old...) {
		if e != nil && e.Tainted && !e.Expired(now) {
			tainted = append(tainted, e.ID())
		}
	}
	return out, bundleDigest(out, tainted)
}

// bundleDigest hashes the certificates and the tainted authority IDs; with
// none tainted it is the digest of the certificates alone, as persisted by
// earlier versions.
func bundleDigest(certs []*x509.Certificate, tainted []string) string {
	ders := make([][]byte, len(certs))
	for i, c := range certs {
		ders[i] = c.Raw
	}
	slices.SortFunc(ders, bytes.Compare)
	h := sha256.New()
	for _, d := range ders {
		fmt.Fprintf(h, "%d:", len(d))
		h.Write(d)
	}
	tainted = slices.Sorted(slices.Values(tainted))
	for _, id := range tainted {
		fmt.Fprintf(h, "tainted:%s;", id)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// mint creates a new authority at now: a self-signed root, or with an
// upstream an intermediate signed by it (CA=true, path length 0, NotAfter
// no later than the upstream's).
func mint(td spiffeid.TrustDomain, keyType string, ttl time.Duration, up *upstream, now time.Time) (*issuer, error) {
	signer, err := generateKey(keyType)
	if err != nil {
		return nil, fmt.Errorf("ca: generate key: %w", err)
	}
	skid, err := subjectKeyID(signer.Public())
	if err != nil {
		return nil, fmt.Errorf("ca: subject key ID: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization: []string{Organization},
			CommonName:   "Hallmark CA " + td.Name(),
		},
		NotBefore:             now.Add(-min(Backdate, ttl/10)), // short test TTLs keep their schedule
		NotAfter:              now.Add(ttl),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          skid,
		URIs:                  []*url.URL{td.ID().URL()},
	}
	parent, parentKey := tmpl, crypto.Signer(signer)
	if up != nil {
		if !now.Before(up.cert.NotAfter) {
			return nil, fmt.Errorf("ca: upstream CA certificate expired at %s", up.cert.NotAfter.UTC().Format(time.RFC3339))
		}
		tmpl.Subject.CommonName = "Hallmark intermediate CA " + td.Name()
		tmpl.MaxPathLen, tmpl.MaxPathLenZero = 0, true
		tmpl.AuthorityKeyId = up.cert.SubjectKeyId
		if tmpl.NotAfter.After(up.cert.NotAfter) {
			tmpl.NotAfter = up.cert.NotAfter
		}
		if tmpl.NotBefore.Before(up.cert.NotBefore) {
			tmpl.NotBefore = up.cert.NotBefore
		}
		parent, parentKey = up.cert, up.signer
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, signer.Public(), parentKey)
	if err != nil {
		return nil, fmt.Errorf("ca: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: parse CA certificate: %w", err)
	}
	a := &issuer{id: authorityID(cert), signer: signer, cert: cert, root: up == nil}
	if up != nil {
		a.chain = append([]*x509.Certificate{cert}, up.chain...)
	}
	return a, nil
}

// errForeign marks an authority that is neither a root of the trust domain
// nor an intermediate of the configured upstream (the configuration
// changed); the CA drops or replaces it rather than failing.
var errForeign = errors.New("issued by neither itself nor the configured upstream CA")

// checkAuthority verifies that cert is a CA certificate of td whose key is
// signer's, and classifies it: a self-signed root, or an intermediate
// issued by up. It returns errForeign (wrapped) for a CA certificate that
// is neither.
func checkAuthority(signer crypto.Signer, cert *x509.Certificate, td spiffeid.TrustDomain, up *upstream) (*issuer, error) {
	if _, err := keyTypeOf(signer); err != nil {
		return nil, err
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, errors.New("certificate does not match the key")
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, errors.New("certificate is not a CA")
	}
	if cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, errors.New("certificate lacks the certSign key usage")
	}
	if len(cert.URIs) != 1 {
		return nil, fmt.Errorf("certificate has %d URI SANs, want 1", len(cert.URIs))
	}
	got, err := spiffeid.FromURI(cert.URIs[0])
	if err != nil {
		return nil, fmt.Errorf("certificate URI SAN: %w", err)
	}
	if got != td.ID() {
		return nil, fmt.Errorf("certificate is for %q, but the configured trust domain is %q", got, td)
	}
	a := &issuer{id: authorityID(cert), signer: signer, cert: cert}
	switch {
	case bytes.Equal(cert.RawSubject, cert.RawIssuer) && cert.CheckSignatureFrom(cert) == nil:
		a.root = true
	case up != nil && bytes.Equal(cert.RawIssuer, up.cert.RawSubject) && cert.CheckSignatureFrom(up.cert) == nil:
		a.chain = append([]*x509.Certificate{cert}, up.chain...)
	default:
		return nil, fmt.Errorf("certificate %s is %w", a.id, errForeign)
	}
	return a, nil
}
