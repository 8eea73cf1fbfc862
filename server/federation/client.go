package federation

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

func (f *Fetcher) newClient(rs *relState) *http.Client {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: f.cfg.WebRoots}
	if rs.rel.Profile == ProfileHTTPSSPIFFE {
		tc = &tls.Config{
			MinVersion: tls.VersionTLS12,
			// The chain is verified below against the foreign bundle, and
			// the SPIFFE ID checked, instead of web PKI and a host name.
			InsecureSkipVerify: true, //nolint:gosec
			VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
				return f.verifyEndpoint(rs, raw)
			},
		}
	}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                  http.ProxyFromEnvironment,
			TLSClientConfig:        tc,
			TLSHandshakeTimeout:    f.cfg.Timeout,
			ResponseHeaderTimeout:  f.cfg.Timeout,
			MaxResponseHeaderBytes: 64 << 10,
			// Each fetch handshakes again, so the endpoint is checked
			// against the bundle current at that time.
			DisableKeepAlives: true,
		},
		Timeout: f.cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a redirect is a non-200 answer
		},
	}
}

// verifyEndpoint checks an https_spiffe endpoint's certificate chain: an
// X509-SVID of the configured ID that verifies against the bundle of its
// trust domain held now.
func (f *Fetcher) verifyEndpoint(rs *relState, raw [][]byte) error {
	td, want := rs.rel.TrustDomain, rs.rel.EndpointID
	if len(raw) == 0 || len(raw) > maxEndpointChainCerts {
		return fmt.Errorf("federation: endpoint presented %d certificates", len(raw))
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, der := range raw {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("federation: endpoint certificate %d: %w", i, err)
		}
		certs[i] = c
	}
	claimed, err := x509svid.IDFromCert(certs[0])
	if err != nil {
		return fmt.Errorf("federation: endpoint certificate is not an X509-SVID: %w", err)
	}
	if claimed.TrustDomain() != td {
		return fmt.Errorf("federation: endpoint SVID %q is in trust domain %q, want %q", claimed, claimed.TrustDomain().Name(), td.Name())
	}
	b := f.current(rs)
	if b == nil || len(b.X509Authorities()) == 0 {
		return fmt.Errorf("federation: no X.509 authorities of %q to authenticate the endpoint with (revoked or never bootstrapped)", td.Name())
	}
	id, _, err := x509svid.Verify(certs, b.X509Bundle())
	if err != nil {
		return fmt.Errorf("federation: endpoint SVID does not verify against the current bundle of %q: %w", td.Name(), err)
	}
	if id != want {
		return fmt.Errorf("federation: endpoint SVID is %q, want %q", id, want)
	}
	return nil
}
