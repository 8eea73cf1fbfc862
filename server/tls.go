package server

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hallmarkid/hallmark/server/ca"
	"github.com/hallmarkid/hallmark/server/jwtsigner"
	"github.com/hallmarkid/hallmark/server/nodeapi"
)

// The server's own TLS identity on the Node API: an SVID for the server ID
// from its CA, re-minted at half-life or when the active authority changes.

func (s *Server) tlsConfig() *tls.Config {
	cas := &clientCAs{}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.serverCert()
		},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return cas.config(s.ca.Bundle(), func(pool *x509.CertPool) *tls.Config {
				return &tls.Config{
					MinVersion:     tls.VersionTLS12,
					GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.serverCert() },
					ClientAuth:     tls.VerifyClientCertIfGiven,
					ClientCAs:      pool,
				}
			}), nil
		},
	}
}

// clientCAs is the configuration the Node API's handshakes verify agent
// certificates with, built once per trust bundle instead of once per
// handshake: a TLS connection keeps its configuration, and with it the
// pool, for its whole life, so with a thousand agents connected a pool
// per handshake was a thousand copies of the same one (and a thousand
// pool builds in an attestation storm). It is rebuilt as soon as the
// bundle differs (an authority prepared, activated, revoked or expired).
type clientCAs struct {
	mu     sync.Mutex // guards the fields that follow
	bundle []*x509.Certificate
	cfg    *tls.Config
}

// config returns the configuration for bundle, made by build from a pool
// of bundle when it differs from the last one. The configuration is
// shared by every handshake and must not be modified.
func (c *clientCAs) config(bundle []*x509.Certificate, build func(*x509.CertPool) *tls.Config) *tls.Config {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cfg != nil && slices.EqualFunc(c.bundle, bundle, (*x509.Certificate).Equal) {
		return c.cfg
	}
	pool := x509.NewCertPool()
	for _, cert := range bundle {
		pool.AddCert(cert)
	}
	c.bundle, c.cfg = bundle, build(pool)
	return c.cfg
}

// serverCert returns the server's TLS certificate, an SVID for the server
// ID, minting a new one past half its life.
func (s *Server) serverCert() (*tls.Certificate, error) {
	s.certMu.Lock()
	defer s.certMu.Unlock()
	now := time.Now()
	if c := s.cert; c != nil {
		leaf := c.Leaf
		// Re-minted at half-life, and at once when its issuer is no longer
		// the active authority (an operator activated another and may be
		// about to revoke the old one).
		if now.Before(leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore)/2)) && issuedBy(leaf, s.ca.Certificate()) {
			return c, nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	certs, err := s.ca.SignX509SVID(context.Background(), ca.X509SVIDParams{ID: s.serverID, PublicKey: key.Public(), TTL: s.cfg.AgentSVIDTTL})
	if err != nil {
		return nil, fmt.Errorf("server: sign server certificate: %w", err)
	}
	s.cert = tlsCert(certs, key)
	return s.cert, nil
}

// issuedBy reports whether leaf was signed by ca's key.
func issuedBy(leaf, ca *x509.Certificate) bool {
	if len(leaf.AuthorityKeyId) > 0 && len(ca.SubjectKeyId) > 0 {
		return bytes.Equal(leaf.AuthorityKeyId, ca.SubjectKeyId)
	}
	return leaf.CheckSignatureFrom(ca) == nil
}

func tlsCert(certs []*x509.Certificate, key crypto.Signer) *tls.Certificate {
	c := &tls.Certificate{PrivateKey: key, Leaf: certs[0]}
	for _, cert := range certs {
		c.Certificate = append(c.Certificate, cert.Raw)
	}
	return c
}

// The CA and the JWT signer report tainted authorities to the Node API.
var (
	_ nodeapi.TaintReporter                 = (*ca.CA)(nil)
	_ interface{ TaintedKeyIDs() []string } = (*jwtsigner.Signer)(nil)
)
