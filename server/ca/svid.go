package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/hallmarkid/hallmark/registration"
)

// SignX509SVID signs a leaf certificate for p with the active authority
// and returns the chain, leaf first: just the leaf under a self-signed
// root; the leaf, the server's intermediate and the upstream's
// intermediates (not its root) with an upstream CA.
func (ca *CA) SignX509SVID(ctx context.Context, p X509SVIDParams) ([]*x509.Certificate, error) {
	a, _, der, err := ca.sign(ctx, p, true)
	if err != nil {
		return nil, err
	}
	return parsedChain(a, der)
}

// parsedChain is the chain of the leaf der issued by a.
func parsedChain(a *issuer, der []byte) ([]*x509.Certificate, error) {
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: sign X.509-SVID: parse issued certificate: %w", err)
	}
	if len(a.chain) == 0 {
		return []*x509.Certificate{leaf}, nil
	}
	out := make([]*x509.Certificate, 0, 1+len(a.chain))
	return append(append(out, leaf), a.chain...), nil
}

// IssuedX509SVID is a signed X.509-SVID in DER, for callers that pass it
// on without reading it: the certificate is not parsed back.
type IssuedX509SVID struct {
	// Chain is the leaf, then the intermediates SignX509SVID returns.
	Chain [][]byte
	// Serial is the leaf's serial number.
	Serial *big.Int
	// NotAfter is the end of the leaf's validity, in UTC to the second,
	// as a parsed certificate reports it.
	NotAfter time.Time
}

// SignX509SVIDRaw is SignX509SVID returning the DER chain: the leaf is
// the same certificate, and its serial and expiry are those it carries.
func (ca *CA) SignX509SVIDRaw(ctx context.Context, p X509SVIDParams) (IssuedX509SVID, error) {
	a, t, der, err := ca.sign(ctx, p, true)
	if err != nil {
		return IssuedX509SVID{}, err
	}
	chain := make([][]byte, 1, 1+len(a.chain))
	chain[0] = der
	for _, c := range a.chain {
		chain = append(chain, c.Raw)
	}
	return IssuedX509SVID{Chain: chain, Serial: t.serial, NotAfter: t.notAfter.UTC().Truncate(time.Second)}, nil
}

// sign validates p, decides the leaf (svidTemplate) and signs it with the
// active authority: with direct set, directly for an in-process ECDSA key;
// through x509.CreateCertificate (which checks the signature it gets)
// otherwise. direct is false only in benchmarks of the stdlib path.
func (ca *CA) sign(ctx context.Context, p X509SVIDParams, direct bool) (*issuer, *svidTemplate, []byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, nil, fmt.Errorf("ca: sign X.509-SVID: %w", err)
	}
	if p.ID.IsZero() {
		return nil, nil, nil, errors.New("ca: sign X.509-SVID: SPIFFE ID is required")
	}
	if p.ID.TrustDomain() != ca.td {
		return nil, nil, nil, fmt.Errorf("ca: sign X.509-SVID: SPIFFE ID %q is not in trust domain %q", p.ID, ca.td)
	}
	if p.ID.Path() == "" {
		return nil, nil, nil, fmt.Errorf("ca: sign X.509-SVID: SPIFFE ID %q has no path", p.ID)
	}
	if len(p.ID.String()) > registration.MaxIDLen {
		return nil, nil, nil, fmt.Errorf("ca: sign X.509-SVID: SPIFFE ID longer than %d bytes", registration.MaxIDLen)
	}
	if p.TTL <= 0 {
		return nil, nil, nil, fmt.Errorf("ca: sign X.509-SVID: TTL must be positive, got %s", p.TTL)
	}
	if err := validatePublicKey(p.PublicKey); err != nil {
		return nil, nil, nil, fmt.Errorf("ca: sign X.509-SVID: %w", err)
	}
	if len(p.DNSNames) > registration.MaxDNSNames {
		return nil, nil, nil, fmt.Errorf("ca: sign X.509-SVID: more than %d DNS names", registration.MaxDNSNames)
	}
	for _, d := range p.DNSNames {
		if err := registration.ValidateDNSName(d); err != nil {
			return nil, nil, nil, fmt.Errorf("ca: sign X.509-SVID: %w", err)
		}
	}

	a := ca.eng.Current().Active().Key
	t, der, err := issue(a, ca.clock(), p, direct)
	if err != nil {
		return nil, nil, nil, err
	}
	return a, t, der, nil
}

// issue signs the X.509-SVID of the checked p with a at now (see sign for
// direct): its validity is clamped to a's; under an RSA subject key it may
// also encipher keys.
func issue(a *issuer, now time.Time, p X509SVIDParams, direct bool) (*svidTemplate, []byte, error) {
	if now.Before(a.cert.NotBefore) {
		return nil, nil, fmt.Errorf("ca: sign X.509-SVID: CA certificate is not valid until %s (clock skew?)", a.cert.NotBefore.UTC().Format(time.RFC3339))
	}
	notAfter := now.Add(p.TTL)
	if notAfter.After(a.cert.NotAfter) {
		notAfter = a.cert.NotAfter
	}
	if !notAfter.After(now) {
		return nil, nil, fmt.Errorf("ca: sign X.509-SVID: CA certificate expired at %s", a.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	notBefore := now.Add(-Backdate)
	if notBefore.Before(a.cert.NotBefore) {
		notBefore = a.cert.NotBefore
	}

	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	t := &svidTemplate{serial: serial, notBefore: notBefore, notAfter: notAfter, keyUsage: x509.KeyUsageDigitalSignature,
		id: p.ID, pub: p.PublicKey}
	if _, ok := p.PublicKey.(*rsa.PublicKey); ok {
		t.keyUsage |= x509.KeyUsageKeyEncipherment
	}
	if len(p.DNSNames) > 0 {
		t.dnsNames = append([]string(nil), p.DNSNames...)
		if len(t.dnsNames[0]) <= maxCNLen {
			t.commonName = t.dnsNames[0]
		}
	}
	var der []byte
	if d, ok := directKeyOf(a.signer); ok && direct {
		if t.spki, err = marshalSPKI(p.PublicKey); err == nil {
			der, err = d.sign(t, a.cert.RawSubject, a.cert.SubjectKeyId)
		}
	} else {
		der, err = createWithStdlib(t, a.cert, a.signer)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("ca: sign X.509-SVID: %w", err)
	}
	return t, der, nil
}

// SubjectPublicKeyInfo prefixes of the keys marshalSPKI writes itself:
// id-ecPublicKey with the named curve, or id-Ed25519, and the BIT STRING
// header (no unused bits).
var (
	spkiP256Head = []byte{
		0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
		0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
	}
	spkiP384Head = []byte{
		0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
		0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22, 0x03, 0x62, 0x00,
	}
	spkiEd25519Head = []byte{0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00}
)

// marshalSPKI is x509.MarshalPKIXPublicKey (the encoding
// x509.CreateCertificate writes), with the fixed-size keys written
// directly. The key was checked by validatePublicKey (an ECDSA point is on
// its curve).
func marshalSPKI(pub crypto.PublicKey) ([]byte, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		var head []byte
		switch k.Curve {
		case elliptic.P256():
			head = spkiP256Head
		case elliptic.P384():
			head = spkiP384Head
		default:
			return x509.MarshalPKIXPublicKey(pub)
		}
		// The uncompressed point: 04 || X || Y, each coordinate padded.
		size := (int(head[len(head)-2]) - 2) / 2
		if k.X == nil || k.Y == nil || k.X.Sign() < 0 || k.Y.Sign() < 0 || k.X.BitLen() > 8*size || k.Y.BitLen() > 8*size {
			return x509.MarshalPKIXPublicKey(pub)
		}
		out := make([]byte, len(head)+1+2*size)
		copy(out, head)
		out[len(head)] = 0x04
		k.X.FillBytes(out[len(head)+1 : len(head)+1+size])
		k.Y.FillBytes(out[len(head)+1+size:])
		return out, nil
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return x509.MarshalPKIXPublicKey(pub)
		}
		out := make([]byte, 0, len(spkiEd25519Head)+len(k))
		return append(append(out, spkiEd25519Head...), k...), nil
	}
	return x509.MarshalPKIXPublicKey(pub)
}
