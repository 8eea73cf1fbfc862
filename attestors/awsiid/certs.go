package awsiid

import (
	"bytes"
	"crypto/x509"
	_ "embed"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// AWS's public certificates for the instance identity document signatures,
// one per region, each preceded by a "# region: <code>" line.
var (
	//go:embed iid-rsa2048-certs.pem
	rsa2048PEM []byte
	//go:embed iid-rsa-certs.pem
	rsa1024PEM []byte
)

// regionCerts are the parsed embedded certificates.
type regionCerts struct {
	rsa2048, rsa1024 map[string]*x509.Certificate
}

// embeddedCerts parses the embedded certificates on first use: only the
// server verifies, and the agent, which links this package for its
// collector, never pays for them.
var embeddedCerts = sync.OnceValues(func() (regionCerts, error) {
	a, err := ParseRegionCertificates(rsa2048PEM)
	if err != nil {
		return regionCerts{}, fmt.Errorf("awsiid: embedded rsa2048 certificates: %w", err)
	}
	b, err := ParseRegionCertificates(rsa1024PEM)
	if err != nil {
		return regionCerts{}, fmt.Errorf("awsiid: embedded rsa1024 certificates: %w", err)
	}
	return regionCerts{rsa2048: a, rsa1024: b}, nil
})

// RSA2048Certificates returns the embedded certificates for the /rsa2048
// PKCS#7 signature, keyed by region code. The map is a copy.
func RSA2048Certificates() map[string]*x509.Certificate {
	c, err := embeddedCerts()
	if err != nil {
		panic(err) // the embedded files are checked by the tests
	}
	return copyCerts(c.rsa2048)
}

// RSA1024Certificates returns the embedded certificates for the /signature
// endpoint, keyed by region code. The map is a copy.
func RSA1024Certificates() map[string]*x509.Certificate {
	c, err := embeddedCerts()
	if err != nil {
		panic(err) // the embedded files are checked by the tests
	}
	return copyCerts(c.rsa1024)
}

func copyCerts(m map[string]*x509.Certificate) map[string]*x509.Certificate {
	c := make(map[string]*x509.Certificate, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// ParseRegionCertificates parses a bundle of "# region: <code> ..." lines,
// each followed by exactly one PEM certificate.
func ParseRegionCertificates(b []byte) (map[string]*x509.Certificate, error) {
	const marker = "# region: "
	m := map[string]*x509.Certificate{}
	chunks := bytes.Split(b, []byte(marker))
	if len(bytes.TrimSpace(chunks[0])) != 0 {
		return nil, fmt.Errorf("awsiid: region certificates: text before the first %q line", strings.TrimSpace(marker))
	}
	for _, chunk := range chunks[1:] {
		line, _, _ := bytes.Cut(chunk, []byte("\n"))
		fields := bytes.Fields(line)
		if len(fields) == 0 {
			return nil, errors.New("awsiid: region certificates: region line without a code")
		}
		region := string(fields[0])
		blk, rest := pem.Decode(chunk)
		if blk == nil || blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("awsiid: region certificates: %s: no certificate", region)
		}
		if next, _ := pem.Decode(rest); next != nil {
			return nil, fmt.Errorf("awsiid: region certificates: %s: more than one certificate", region)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("awsiid: region certificates: %s: %w", region, err)
		}
		if _, dup := m[region]; dup {
			return nil, fmt.Errorf("awsiid: region certificates: %s listed twice", region)
		}
		m[region] = c
	}
	return m, nil
}
