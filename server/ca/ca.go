package ca

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/registration"
)

// DefaultTTL is the lifetime of a newly created root when Config.TTL is 0.
// It is a week, not a year, so that a leaked key ages out; until rotation
// exists, an operator must replace an expiring root by hand (New warns when
// 1/6 of the lifetime remains).
const DefaultTTL = 7 * 24 * time.Hour

// Backdate is how far before "now" certificates start being valid, to
// tolerate small clock differences between issuer and relying parties.
const Backdate = 10 * time.Second

// Organization is the Subject O of every certificate the CA issues.
const Organization = "Hallmark"

// maxCNLen is the X.520 upper bound on a commonName.
const maxCNLen = 64

// Config configures a CA.
type Config struct {
	// TrustDomain is the trust domain the CA is the root of. Required.
	TrustDomain spiffeid.TrustDomain
	// KeyType of a newly created root: KeyTypeECP256 (default when empty),
	// KeyTypeECP384 or KeyTypeRSA2048. A persisted root keeps its own type.
	KeyType string
	// TTL is the lifetime of a newly created root; 0 means DefaultTTL.
	TTL time.Duration
	// Dir holds the persisted key and certificate; created with mode 0700.
	Dir string
	// Clock returns the current time; nil means time.Now.
	Clock func() time.Time
	// Log receives warnings about the root; nil discards them.
	Log *slog.Logger
}

// authority is one signing key and its certificate. It is immutable.
type authority struct {
	signer crypto.Signer
	cert   *x509.Certificate
	bundle []*x509.Certificate
}

// CA signs X.509-SVIDs for one trust domain. It is safe for concurrent use.
type CA struct {
	td    spiffeid.TrustDomain
	clock func() time.Time
	log   *slog.Logger
	cur   atomic.Pointer[authority] // swapped as a whole, never mutated
}

// New loads the CA persisted in cfg.Dir, or creates and persists a new
// self-signed root when the directory holds neither file. A restart keeps
// the same key and certificate. Corrupt, half-present or mismatched files
// are reported as errors and never overwritten.
func New(cfg Config) (*CA, error) {
	if cfg.TrustDomain.IsZero() {
		return nil, errors.New("ca: TrustDomain is required")
	}
	if cfg.KeyType == "" {
		cfg.KeyType = KeyTypeECP256
	}
	switch cfg.KeyType {
	case KeyTypeECP256, KeyTypeECP384, KeyTypeRSA2048:
	default:
		return nil, fmt.Errorf("ca: unknown key type %q (want %s, %s or %s)", cfg.KeyType, KeyTypeECP256, KeyTypeECP384, KeyTypeRSA2048)
	}
	if cfg.TTL < 0 {
		return nil, fmt.Errorf("ca: negative TTL %s", cfg.TTL)
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	ca := &CA{td: cfg.TrustDomain, clock: cfg.Clock, log: cfg.Log}

	if err := prepareDir(cfg.Dir); err != nil {
		return nil, err
	}
	st, err := load(cfg.Dir, cfg.TrustDomain)
	switch {
	case errors.Is(err, errNoCA):
		st, err = create(cfg)
		if err != nil {
			return nil, err
		}
		cfg.Log.Info("created new CA root", "trust_domain", cfg.TrustDomain.Name(), "key_type", cfg.KeyType,
			"serial", st.cert.SerialNumber.Text(16), "not_after", st.cert.NotAfter, "dir", cfg.Dir)
	case err != nil:
		return nil, err
	default:
		kt, _ := keyTypeOf(st.signer) // validated by load
		if kt != cfg.KeyType {
			cfg.Log.Warn("persisted CA key type differs from configuration; keeping the persisted key",
				"persisted", kt, "configured", cfg.KeyType, "dir", cfg.Dir)
		}
		cfg.Log.Info("loaded CA root", "trust_domain", cfg.TrustDomain.Name(), "key_type", kt,
			"serial", st.cert.SerialNumber.Text(16), "not_after", st.cert.NotAfter)
	}
	ca.warnExpiry(st.cert)
	ca.cur.Store(&authority{signer: st.signer, cert: st.cert, bundle: []*x509.Certificate{st.cert}})
	return ca, nil
}

// create makes a new self-signed root and persists it.
func create(cfg Config) (*stored, error) {
	signer, err := generateKey(cfg.KeyType)
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
	now := cfg.Clock()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization: []string{Organization},
			CommonName:   "Hallmark CA " + cfg.TrustDomain.Name(),
		},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              now.Add(cfg.TTL),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          skid,
		URIs:                  []*url.URL{cfg.TrustDomain.ID().URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("ca: create root certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: parse root certificate: %w", err)
	}
	if err := save(cfg.Dir, signer, cert); err != nil {
		return nil, err
	}
	return &stored{signer: signer, cert: cert}, nil
}

// warnExpiry logs when the root is expired, not yet valid, or within 1/6
// of its lifetime from expiry.
func (ca *CA) warnExpiry(cert *x509.Certificate) {
	now := ca.clock()
	lifetime := cert.NotAfter.Sub(cert.NotBefore)
	left := cert.NotAfter.Sub(now)
	switch {
	case !now.Before(cert.NotAfter):
		ca.log.Warn("CA root has expired; no SVIDs can be signed until it is replaced (rotation is not implemented yet)",
			"not_after", cert.NotAfter)
	case now.Before(cert.NotBefore):
		ca.log.Warn("CA root is not valid yet; check the clock", "not_before", cert.NotBefore, "now", now)
	case left < lifetime/6:
		ca.log.Warn("CA root expires soon (rotation is not implemented yet)", "not_after", cert.NotAfter, "remaining", left)
	}
}

// Bundle returns the trust anchors of the trust domain (today the one
// root). The slice is a fresh copy; the certificates must not be modified.
func (ca *CA) Bundle() []*x509.Certificate {
	b := ca.cur.Load().bundle
	return append([]*x509.Certificate(nil), b...)
}

// Certificate returns the CA certificate that signs SVIDs.
func (ca *CA) Certificate() *x509.Certificate {
	return ca.cur.Load().cert
}

// X509SVIDParams describes one X.509-SVID to sign. The caller has already
// decided that the holder of PublicKey is entitled to ID.
type X509SVIDParams struct {
	// ID is the SPIFFE ID the leaf carries; it must be in the CA's trust
	// domain and have a path.
	ID spiffeid.ID
	// PublicKey is the subject key, typically from a CSR parsed by ParseCSR.
	PublicKey crypto.PublicKey
	// TTL is the requested lifetime; must be > 0. The leaf never outlives
	// the CA certificate.
	TTL time.Duration
	// DNSNames are optional DNS SANs; the first becomes the Subject CN when
	// it fits the 64-character X.520 limit.
	DNSNames []string
}

// SignX509SVID signs a leaf certificate for p and returns the chain, leaf
// first (today just the leaf; intermediates will follow it).
func (ca *CA) SignX509SVID(ctx context.Context, p X509SVIDParams) ([]*x509.Certificate, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("ca: sign X.509-SVID: %w", err)
	}
	if p.ID.IsZero() {
		return nil, errors.New("ca: sign X.509-SVID: SPIFFE ID is required")
	}
	if p.ID.TrustDomain() != ca.td {
		return nil, fmt.Errorf("ca: sign X.509-SVID: SPIFFE ID %q is not in trust domain %q", p.ID, ca.td)
	}
	if p.ID.Path() == "" {
		return nil, fmt.Errorf("ca: sign X.509-SVID: SPIFFE ID %q has no path", p.ID)
	}
	if len(p.ID.String()) > registration.MaxIDLen {
		return nil, fmt.Errorf("ca: sign X.509-SVID: SPIFFE ID longer than %d bytes", registration.MaxIDLen)
	}
	if p.TTL <= 0 {
		return nil, fmt.Errorf("ca: sign X.509-SVID: TTL must be positive, got %s", p.TTL)
	}
	if err := validatePublicKey(p.PublicKey); err != nil {
		return nil, fmt.Errorf("ca: sign X.509-SVID: %w", err)
	}
	if len(p.DNSNames) > registration.MaxDNSNames {
		return nil, fmt.Errorf("ca: sign X.509-SVID: more than %d DNS names", registration.MaxDNSNames)
	}
	for _, d := range p.DNSNames {
		if err := registration.ValidateDNSName(d); err != nil {
			return nil, fmt.Errorf("ca: sign X.509-SVID: %w", err)
		}
	}

	a := ca.cur.Load()
	now := ca.clock()
	if now.Before(a.cert.NotBefore) {
		return nil, fmt.Errorf("ca: sign X.509-SVID: CA certificate is not valid until %s (clock skew?)", a.cert.NotBefore.UTC().Format(time.RFC3339))
	}
	notAfter := now.Add(p.TTL)
	if notAfter.After(a.cert.NotAfter) {
		notAfter = a.cert.NotAfter
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("ca: sign X.509-SVID: CA certificate expired at %s", a.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	notBefore := now.Add(-Backdate)
	if notBefore.Before(a.cert.NotBefore) {
		notBefore = a.cert.NotBefore
	}

	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	keyUsage := x509.KeyUsageDigitalSignature
	if _, ok := p.PublicKey.(*rsa.PublicKey); ok {
		keyUsage |= x509.KeyUsageKeyEncipherment
	}
	subject := pkix.Name{Organization: []string{Organization}}
	var dnsNames []string
	if len(p.DNSNames) > 0 {
		dnsNames = append(dnsNames, p.DNSNames...)
		if len(dnsNames[0]) <= maxCNLen {
			subject.CommonName = dnsNames[0]
		}
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              keyUsage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		URIs:                  []*url.URL{p.ID.URL()},
		DNSNames:              dnsNames,
		AuthorityKeyId:        a.cert.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, p.PublicKey, a.signer)
	if err != nil {
		return nil, fmt.Errorf("ca: sign X.509-SVID: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: sign X.509-SVID: parse issued certificate: %w", err)
	}
	return []*x509.Certificate{leaf}, nil
}
