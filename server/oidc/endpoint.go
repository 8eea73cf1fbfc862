package oidc

import (
	"context"
	"crypto"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultCertReloadInterval is how often the endpoint checks whether its
// certificate files changed.
const DefaultCertReloadInterval = time.Minute

// Config configures an Endpoint.
type Config struct {
	// Issuer is the https URL of the discovery document (jwt_issuer).
	Issuer string
	// Keys returns the current JWT signing keys by key ID.
	Keys func() map[string]crypto.PublicKey
	// Address is the host:port ListenAndServe listens on.
	Address string
	// Domains are the host names accepted in the Host header; empty means
	// the issuer's host alone.
	Domains []string
	// CertFile and KeyFile, when set, are the PEM certificate chain and key
	// served over HTTPS, re-read when their size or modification time
	// changes (checked at most every CertReloadInterval). Without them the
	// endpoint speaks plain HTTP, which Address must then keep on loopback.
	CertFile, KeyFile  string
	CertReloadInterval time.Duration
	// Log receives serving messages; nil discards them.
	Log *slog.Logger
}

// Endpoint serves OIDC discovery and the JWKS on its own listener.
type Endpoint struct {
	cfg     Config
	log     *slog.Logger
	handler http.Handler
	domains []string
	certs   *certFiles // nil: plain HTTP
}

// New checks cfg and, with HTTPS, loads the certificate and key, so that a
// bad pair stops start-up.
func New(cfg Config) (*Endpoint, error) {
	h, err := Handler(cfg.Issuer, cfg.Keys)
	if err != nil {
		return nil, err
	}
	u, _ := url.Parse(cfg.Issuer) // Handler parsed it
	e := &Endpoint{cfg: cfg, log: cfg.Log, handler: h, domains: slices.Clone(cfg.Domains)}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if len(e.domains) == 0 {
		e.domains = []string{strings.ToLower(u.Hostname())}
	}
	host, _, err := net.SplitHostPort(cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("oidc: address %q: %w", cfg.Address, err)
	}
	switch {
	case (cfg.CertFile == "") != (cfg.KeyFile == ""):
		return nil, errors.New("oidc: HTTPS needs both a certificate file and a key file")
	case cfg.CertFile != "":
		every := cfg.CertReloadInterval
		if every <= 0 {
			every = DefaultCertReloadInterval
		}
		e.certs = &certFiles{certPath: cfg.CertFile, keyPath: cfg.KeyFile, every: every, log: e.log}
		if err := e.certs.load(); err != nil {
			return nil, err
		}
	default:
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("oidc: plain HTTP on %q: only a loopback address may serve without TLS", cfg.Address)
		}
	}
	return e, nil
}

// Handler returns the endpoint's HTTP handler: requests naming a host
// outside Domains are refused, the rest go to the discovery handler.
func (e *Endpoint) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
		if !slices.Contains(e.domains, host) {
			http.Error(w, "unknown host", http.StatusMisdirectedRequest)
			return
		}
		e.handler.ServeHTTP(w, r)
	})
}

// ListenAndServe listens on the configured Address and serves until ctx is
// done.
func (e *Endpoint) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", e.cfg.Address)
	if err != nil {
		return fmt.Errorf("oidc: listen: %w", err)
	}
	return e.Serve(ctx, ln)
}

// Serve serves on ln (HTTPS when configured with a certificate, else
// plain HTTP) until ctx is done, then shuts down, waiting at most 3 s for
// requests in flight, and returns nil. It closes ln.
func (e *Endpoint) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           e.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(e.log.Handler(), slog.LevelDebug),
	}
	errCh := make(chan error, 1)
	if e.certs != nil {
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return e.certs.get(), nil }}
		go func() { errCh <- srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { errCh <- srv.Serve(ln) }()
	}
	e.log.Info("OIDC discovery endpoint serving", "address", ln.Addr().String(), "issuer", e.cfg.Issuer,
		"domains", e.domains, "tls", e.certs != nil)
	select {
	case err := <-errCh:
		return fmt.Errorf("oidc: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	return nil
}

// certFiles is a certificate and key pair on disk, reloaded when either
// file changes. A reload that fails keeps the previous pair and logs.
type certFiles struct {
	certPath, keyPath string
	every             time.Duration
	log               *slog.Logger

	mu      sync.Mutex // guards the fields that follow
	cert    *tls.Certificate
	stamp   string
	checked time.Time
}

func (c *certFiles) fileStamp() (string, error) {
	var b strings.Builder
	for _, p := range []string{c.certPath, c.keyPath} {
		fi, err := os.Stat(p)
		if err != nil {
			return "", fmt.Errorf("oidc: %w", err)
		}
		fmt.Fprintf(&b, "%d/%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String(), nil
}

func (c *certFiles) load() error {
	stamp, err := c.fileStamp()
	if err != nil {
		return err
	}
	pair, err := tls.LoadX509KeyPair(c.certPath, c.keyPath)
	if err != nil {
		return fmt.Errorf("oidc: certificate: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cert, c.stamp, c.checked = &pair, stamp, time.Now()
	return nil
}

// get returns the current pair, first reloading it if the files changed
// and the last check is older than every.
func (c *certFiles) get() *tls.Certificate {
	c.mu.Lock()
	due := time.Since(c.checked) >= c.every
	if due {
		c.checked = time.Now()
	}
	stamp, cur := c.stamp, c.cert
	c.mu.Unlock()
	if !due {
		return cur
	}
	if s, err := c.fileStamp(); err != nil || s == stamp {
		if err != nil {
			c.log.Warn("Cannot check the OIDC endpoint certificate files; serving the loaded pair", "error", err)
		}
		return cur
	}
	if err := c.load(); err != nil {
		c.log.Warn("Cannot reload the OIDC endpoint certificate; serving the previous pair", "error", err)
		return cur
	}
	c.log.Info("Reloaded the OIDC endpoint certificate", "cert_file", c.certPath)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cert
}
