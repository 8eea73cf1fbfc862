package ca

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"
)

// upstream is an existing CA whose key signs the server's intermediates.
type upstream struct {
	signer crypto.Signer
	cert   *x509.Certificate
	// chain is what follows the server's intermediate in an SVID chain:
	// the upstream certificate and its intermediates, without the root.
	chain []*x509.Certificate
	// roots are the trust anchors the bundle carries instead of the
	// server's own authorities.
	roots []*x509.Certificate
}

// loadUpstream reads and checks an upstream CA: certPath holds its
// certificate first, optionally followed by the intermediates (and the
// root) it chains to; keyPath its private key (PKCS#8, PKCS#1 or SEC1
// PEM, mode 0600 or stricter); bundlePath, when set, the trust anchors —
// otherwise the self-signed certificates of certPath are. It rejects a
// certificate that is not a CA (or may not issue another CA), does not
// match the key, is not valid at now, or does not chain to the anchors,
// and an unsupported key type.
func loadUpstream(certPath, keyPath, bundlePath string, now time.Time) (*upstream, error) {
	if certPath == "" || keyPath == "" {
		return nil, errors.New("ca: upstream: both the certificate and the key file are required")
	}
	data, err := readBounded(certPath)
	if err != nil {
		return nil, fmt.Errorf("ca: upstream: %w", err)
	}
	certs, err := parseCertsPEM(data)
	if err != nil {
		return nil, fmt.Errorf("ca: upstream certificate file %s: %w", certPath, err)
	}
	cert := certs[0]
	signer, err := readUpstreamKey(keyPath)
	if err != nil {
		return nil, err
	}
	if _, err := keyTypeOf(signer); err != nil {
		return nil, fmt.Errorf("ca: upstream key file %s: %w", keyPath, err)
	}
	if err := checkUpstreamCert(cert, signer, now); err != nil {
		return nil, fmt.Errorf("ca: upstream certificate %s (%q): %w", certPath, cert.Subject.String(), err)
	}

	var roots []*x509.Certificate
	if bundlePath != "" {
		b, err := readBounded(bundlePath)
		if err != nil {
			return nil, fmt.Errorf("ca: upstream: %w", err)
		}
		if roots, err = parseCertsPEM(b); err != nil {
			return nil, fmt.Errorf("ca: upstream bundle file %s: %w", bundlePath, err)
		}
		for _, r := range roots {
			if !r.BasicConstraintsValid || !r.IsCA {
				return nil, fmt.Errorf("ca: upstream bundle file %s: %q is not a CA certificate", bundlePath, r.Subject.String())
			}
		}
	} else {
		for _, c := range certs {
			if isSelfSigned(c) {
				roots = append(roots, c)
			}
		}
		if len(roots) == 0 {
			return nil, fmt.Errorf("ca: upstream certificate file %s holds no self-signed root; give the trust anchors in a bundle file", certPath)
		}
	}
	rootPool, interPool := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range roots {
		rootPool.AddCert(r)
	}
	for _, c := range certs[1:] {
		interPool.AddCert(c)
	}
	chains, err := cert.Verify(x509.VerifyOptions{
		Roots: rootPool, Intermediates: interPool, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fmt.Errorf("ca: upstream certificate %s does not chain to the upstream trust anchors: %w", certPath, err)
	}
	chain := chains[0]
	return &upstream{signer: signer, cert: cert, chain: chain[:len(chain)-1], roots: roots}, nil
}

// checkUpstreamCert checks that cert may issue the server's intermediate.
func checkUpstreamCert(cert *x509.Certificate, signer crypto.Signer, now time.Time) error {
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return errors.New("does not match the key file")
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return errors.New("is not a CA certificate (basic constraints CA=false or absent)")
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return errors.New("lacks the keyCertSign key usage")
	}
	if cert.MaxPathLen == 0 && cert.MaxPathLenZero {
		return errors.New("has path length 0, so it may not issue the server's intermediate CA")
	}
	if now.Before(cert.NotBefore) {
		return fmt.Errorf("is not valid until %s (clock skew?)", cert.NotBefore.UTC().Format(time.RFC3339))
	}
	if !now.Before(cert.NotAfter) {
		return fmt.Errorf("expired at %s", cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil
}

// parseCertsPEM parses one or more CERTIFICATE blocks and nothing else.
func parseCertsPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is %q, want \"CERTIFICATE\"", len(certs)+1, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("unexpected data after the PEM blocks")
	}
	return certs, nil
}

// readUpstreamKey reads the upstream CA's private key: PKCS#8 "PRIVATE
// KEY", PKCS#1 "RSA PRIVATE KEY" or SEC1 "EC PRIVATE KEY"; unencrypted; in
// a regular file no group or other user can read.
func readUpstreamKey(path string) (crypto.Signer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("ca: upstream key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("ca: upstream key file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("ca: upstream key file %s has mode %#o; want 0600 (no group or other access)", path, perm)
	}
	data, err := readBounded(path)
	if err != nil {
		return nil, fmt.Errorf("ca: upstream: %w", err)
	}
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("ca: upstream key file %s: no PEM block found", path)
	}
	if len(block.Headers) != 0 {
		return nil, fmt.Errorf("ca: upstream key file %s: PEM block has headers (encrypted keys are not supported)", path)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("ca: upstream key file %s: unexpected data after the PEM block", path)
	}
	var k any
	switch block.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("ca: upstream key file %s: PEM block is %q, want a private key", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("ca: upstream key file %s: %w", path, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("ca: upstream key file %s: key of type %T cannot sign", path, k)
	}
	return signer, nil
}
