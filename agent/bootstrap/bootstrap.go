// Package bootstrap loads the trust bundle an agent authenticates the
// server with on first contact, before the server has given it one: from
// a file (trust_bundle_path) or an https URL (trust_bundle_url), as PEM
// certificates or a SPIFFE bundle document (trust_bundle_format). The
// agent loads it again before every bootstrap attempt, so a file or URL
// fixed after a CA rotation is picked up without a restart.
//
// It must not import server packages or the Kubernetes modules.
package bootstrap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Formats.
const (
	FormatPEM    = "pem"
	FormatSPIFFE = "spiffe"
)

// MaxSize bounds a bootstrap bundle (file or download).
const MaxSize = 1 << 20

const fetchTimeout = 10 * time.Second

// Source is where the bootstrap bundle comes from: exactly one of Path and
// URL.
type Source struct {
	TrustDomain spiffeid.TrustDomain
	Path        string
	URL         string
	Format      string // FormatPEM ("" too) or FormatSPIFFE
	// CheckURL vets the URL of every redirect (the agent passes its
	// https-only rule); nil refuses redirects.
	CheckURL func(string) error
	// RootCAs verifies the URL's server; nil means the system roots
	// (SSL_CERT_FILE and SSL_CERT_DIR are honoured).
	RootCAs *x509.CertPool
}

func (s *Source) String() string {
	if s.URL != "" {
		return "trust_bundle_url " + s.URL
	}
	return "trust_bundle_path " + s.Path
}

// Load reads and parses the bundle.
func (s *Source) Load(ctx context.Context) ([]*x509.Certificate, error) {
	var data []byte
	var err error
	switch {
	case s.URL != "":
		data, err = s.fetch(ctx)
	case s.Path != "":
		data, err = readFile(s.Path)
	default:
		err = errors.New("no trust_bundle_path or trust_bundle_url")
	}
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %s: %w", s, err)
	}
	certs, err := Parse(s.TrustDomain, data, s.Format)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %s: %w", s, err)
	}
	return certs, nil
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readLimited(f)
}

func readLimited(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("larger than %d bytes", MaxSize)
	}
	return data, nil
}

// client returns a client with TLS 1.2+, a 10 s timeout and CheckURL on
// redirects.
func (s *Source) client() *http.Client {
	return &http.Client{
		Timeout: fetchTimeout,
		Transport: &http.Transport{
			Proxy:           http.ProxyFromEnvironment,
			TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: s.RootCAs},
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if s.CheckURL == nil {
				return errors.New("redirects are not followed")
			}
			if len(via) >= 5 {
				return errors.New("too many redirects")
			}
			return s.CheckURL(req.URL.String())
		},
	}
}

func (s *Source) fetch(ctx context.Context) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.client().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %s", resp.Status)
	}
	return readLimited(resp.Body)
}

// Parse decodes a bundle in format (FormatPEM or FormatSPIFFE): at least
// one certificate, every one a CA certificate.
func Parse(td spiffeid.TrustDomain, data []byte, format string) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	switch format {
	case FormatPEM, "":
		for {
			var b *pem.Block
			b, data = pem.Decode(data)
			if b == nil {
				break
			}
			if b.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("pem: %w", err)
			}
			certs = append(certs, c)
		}
	case FormatSPIFFE:
		if len(data) > MaxSize {
			return nil, fmt.Errorf("larger than %d bytes", MaxSize)
		}
		b, err := spiffebundle.Parse(td, data)
		if err != nil {
			return nil, err
		}
		certs = b.X509Authorities()
	default:
		return nil, fmt.Errorf("unknown format %q", format)
	}
	if len(certs) == 0 {
		return nil, errors.New("no certificates found")
	}
	for _, c := range certs {
		if !c.IsCA {
			return nil, fmt.Errorf("certificate %q is not a CA certificate", c.Subject)
		}
	}
	return certs, nil
}
