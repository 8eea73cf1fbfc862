package federation

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Profile is a bundle endpoint profile of the SPIFFE federation spec.
type Profile string

// Bundle endpoint profiles.
const (
	// ProfileHTTPSWeb authenticates the endpoint with web PKI: a
	// certificate for its DNS name or IP address.
	ProfileHTTPSWeb Profile = "https_web"
	// ProfileHTTPSSPIFFE authenticates the endpoint with an X509-SVID that
	// verifies against the bundle of the endpoint's trust domain.
	ProfileHTTPSSPIFFE Profile = "https_spiffe"
)

// Endpoint defaults.
const (
	DefaultRefreshHint        = 5 * time.Minute
	DefaultCertReloadInterval = time.Minute
)

// EndpointConfig configures a bundle endpoint.
type EndpointConfig struct {
	// TrustDomain is the trust domain whose bundle is served (for logs).
	TrustDomain spiffeid.TrustDomain
	// Address is the host:port ListenAndServe listens on.
	Address string
	// Profile is ProfileHTTPSWeb or ProfileHTTPSSPIFFE.
	Profile Profile

	// CertFile and KeyFile are the PEM certificate chain and private key
	// served with ProfileHTTPSWeb. They are re-read when their size or
	// modification time changes, checked at most every
	// CertReloadInterval (default DefaultCertReloadInterval).
	CertFile, KeyFile  string
	CertReloadInterval time.Duration

	// GetCertificate returns the current SVID served with
	// ProfileHTTPSSPIFFE, typically the server's own.
	GetCertificate func() (*tls.Certificate, error)

	// Bundle returns the trust domain's X.509 authorities and the bundle's
	// sequence number, which must grow whenever the authorities change.
	Bundle func() (certs []*x509.Certificate, sequence uint64)
	// JWTAuthorities, if set, returns the JWT signing keys by key ID.
	JWTAuthorities func() map[string]crypto.PublicKey
	// RefreshHint is advertised as spiffe_refresh_hint (rounded up to
	// whole seconds); default DefaultRefreshHint.
	RefreshHint time.Duration

	Log *slog.Logger
}

// Endpoint serves the trust domain's SPIFFE bundle over HTTPS.
type Endpoint struct {
	cfg   EndpointConfig
	log   *slog.Logger
	tls   *tls.Config
	files *certFiles // ProfileHTTPSWeb only
}

// NewEndpoint checks cfg and, for ProfileHTTPSWeb, loads the certificate
// and key, so that a bad pair stops start-up.
func NewEndpoint(cfg EndpointConfig) (*Endpoint, error) {
	if cfg.Bundle == nil {
		return nil, errors.New("federation: endpoint: no Bundle source")
	}
	if cfg.RefreshHint <= 0 {
		cfg.RefreshHint = DefaultRefreshHint
	}
	if cfg.CertReloadInterval <= 0 {
		cfg.CertReloadInterval = DefaultCertReloadInterval
	}
	e := &Endpoint{cfg: cfg, log: cfg.Log}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	e.tls = &tls.Config{MinVersion: tls.VersionTLS12}
	switch cfg.Profile {
	case ProfileHTTPSWeb:
		if cfg.CertFile == "" || cfg.KeyFile == "" {
			return nil, errors.New("federation: endpoint: https_web needs a certificate file and a key file")
		}
		e.files = &certFiles{certPath: cfg.CertFile, keyPath: cfg.KeyFile, every: cfg.CertReloadInterval, log: e.log}
		if err := e.files.load(); err != nil {
			return nil, fmt.Errorf("federation: endpoint: %w", err)
		}
		e.tls.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return e.files.get(), nil }
	case ProfileHTTPSSPIFFE:
		if cfg.GetCertificate == nil {
			return nil, errors.New("federation: endpoint: https_spiffe needs a GetCertificate source (the server's SVID)")
		}
		e.tls.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cfg.GetCertificate() }
	default:
		return nil, fmt.Errorf("federation: endpoint: profile %q is not %q or %q", cfg.Profile, ProfileHTTPSWeb, ProfileHTTPSSPIFFE)
	}
	return e, nil
}

// Handler returns the HTTP handler (without TLS): GET / returns the
// bundle; other paths are 404, other methods 405.
func (e *Endpoint) Handler() http.Handler {
	return http.HandlerFunc(e.serveHTTP)
}

func (e *Endpoint) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, err := e.document()
	if err != nil {
		e.log.Error("Cannot serve the trust bundle", "error", err)
		http.Error(w, "bundle unavailable", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(body)
}

// document renders the bundle. An empty bundle is never published: to a
// peer it means revocation of every SVID of this trust domain.
func (e *Endpoint) document() ([]byte, error) {
	certs, seq := e.cfg.Bundle()
	if len(certs) == 0 {
		return nil, errors.New("federation: endpoint: the bundle source returned no X.509 authorities")
	}
	var jwt map[string]crypto.PublicKey
	if e.cfg.JWTAuthorities != nil {
		jwt = e.cfg.JWTAuthorities()
	}
	hint := int64((e.cfg.RefreshHint + time.Second - 1) / time.Second)
	doc := bundleDoc{Keys: appendKeys(make([]jose.JSONWebKey, 0, len(certs)+len(jwt)), certs, jwt),
		SequenceNumber: &seq, RefreshHint: &hint}
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("federation: endpoint: marshal bundle: %w", err)
	}
	return out, nil
}

// ListenAndServe listens on the configured Address and serves until ctx
// is done.
func (e *Endpoint) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", e.cfg.Address)
	if err != nil {
		return fmt.Errorf("federation: endpoint: listen: %w", err)
	}
	return e.Serve(ctx, ln)
}

// Serve serves HTTPS on ln until ctx is done, then shuts down (waiting at
// most 3 s for requests in flight) and returns nil. It closes ln.
func (e *Endpoint) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           e.Handler(),
		TLSConfig:         e.tls,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(e.log.Handler(), slog.LevelDebug),
	}
	e.log.Info("Bundle endpoint serving", "address", ln.Addr().String(), "profile", string(e.cfg.Profile),
		"trust_domain", e.cfg.TrustDomain.Name())
	errCh := make(chan error, 1)
	go func() { errCh <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-errCh:
		return fmt.Errorf("federation: endpoint: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	<-errCh
	return nil
}

// certFiles serves a certificate and key pair from files, re-reading them
// when they change.
type certFiles struct {
	certPath, keyPath string
	every             time.Duration
	log               *slog.Logger

	mu      sync.Mutex // guards the fields that follow
	cert    *tls.Certificate
	stamp   [2]fileStamp
	checked time.Time
}

type fileStamp struct {
	size int64
	mod  time.Time
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{size: fi.Size(), mod: fi.ModTime()}, nil
}

func (a fileStamp) same(b fileStamp) bool { return a.size == b.size && a.mod.Equal(b.mod) }

// load reads the pair unconditionally.
func (f *certFiles) load() error {
	cs, err1 := stampOf(f.certPath)
	ks, err2 := stampOf(f.keyPath)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("serving certificate: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(f.certPath, f.keyPath)
	if err != nil {
		return fmt.Errorf("serving certificate %s, key %s: %w", f.certPath, f.keyPath, err)
	}
	f.mu.Lock()
	f.cert, f.stamp, f.checked = &cert, [2]fileStamp{cs, ks}, time.Now()
	f.mu.Unlock()
	return nil
}

// get returns the current pair, re-reading the files first when the check
// interval has passed and they changed. A pair that fails to load is
// logged and the previous one kept.
func (f *certFiles) get() *tls.Certificate {
	f.mu.Lock()
	due := time.Since(f.checked) >= f.every
	if due {
		f.checked = time.Now()
	}
	cert, stamp := f.cert, f.stamp
	f.mu.Unlock()
	if !due {
		return cert
	}
	cs, err1 := stampOf(f.certPath)
	ks, err2 := stampOf(f.keyPath)
	if errors.Join(err1, err2) == nil && cs.same(stamp[0]) && ks.same(stamp[1]) {
		return cert
	}
	if err := f.load(); err != nil {
		f.log.Warn("Keeping the previous bundle endpoint certificate", "error", err)
		return cert
	}
	f.log.Info("Reloaded the bundle endpoint certificate", "cert_file", f.certPath)
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cert
}
