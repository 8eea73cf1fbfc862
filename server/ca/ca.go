package ca

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/server/authority"
)

// DefaultTTL is the lifetime of a newly created authority when Config.TTL
// is 0. Run replaces the active authority well before it expires.
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
	// TrustDomain is the trust domain the CA is the authority of. Required.
	TrustDomain spiffeid.TrustDomain
	// KeyType of newly created authorities: KeyTypeECP256 (default when
	// empty), KeyTypeECP384 or KeyTypeRSA2048. A persisted authority keeps
	// its own type; the next one made by rotation has the configured type.
	KeyType string
	// TTL is the lifetime of a newly created authority; 0 means DefaultTTL.
	// With an upstream CA, an intermediate never outlives the upstream.
	TTL time.Duration
	// Dir holds the persisted authorities; created with mode 0700.
	Dir string
	// Clock returns the current time; nil means time.Now.
	Clock func() time.Time
	// Log receives rotation events and warnings; nil discards them.
	Log *slog.Logger

	// UpstreamCertPath and UpstreamKeyPath, when set, name an existing CA
	// (PEM; the certificate file may continue with its intermediates and
	// root) whose key signs the server's authorities, which are then
	// intermediates; Bundle is then the upstream trust anchors.
	UpstreamCertPath, UpstreamKeyPath string
	// UpstreamBundlePath optionally names the upstream trust anchors (PEM);
	// when empty, the self-signed certificates of UpstreamCertPath are.
	UpstreamBundlePath string

	// Shared, when set, is where servers sharing one database agree on the
	// authority set (see the package documentation for the trade-off: the
	// private keys are stored there). SharedNotFound is the error GetKV
	// returns (errors.Is) for an absent key, e.g. datastore.ErrNotFound.
	Shared         KVStore
	SharedNotFound error
}

// CA signs X.509-SVIDs for one trust domain and rotates its authorities.
// It is safe for concurrent use.
type CA struct {
	td    spiffeid.TrustDomain
	clock func() time.Time
	log   *slog.Logger
	eng   *authority.Engine[*issuer, entryDoc, []*x509.Certificate]
}

// New loads the CA persisted in cfg.Dir (and, with cfg.Shared, the state
// the servers share, which wins), or creates and persists a new authority
// when there is none. A restart keeps the same authorities and roles.
// Corrupt, half-present or mismatched files are reported as errors and
// never overwritten. New does not rotate: Run does.
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
	if cfg.Shared != nil && cfg.SharedNotFound == nil {
		return nil, errors.New("ca: SharedNotFound is required with Shared")
	}
	if (cfg.UpstreamCertPath == "") != (cfg.UpstreamKeyPath == "") || (cfg.UpstreamBundlePath != "" && cfg.UpstreamCertPath == "") {
		return nil, errors.New("ca: upstream: both the certificate and the key file are required")
	}
	if err := files.PrepareDir(cfg.Dir, false); err != nil {
		return nil, err
	}
	k := &kind{td: cfg.TrustDomain, keyType: cfg.KeyType, ttl: cfg.TTL, dir: cfg.Dir, log: cfg.Log}
	if cfg.UpstreamCertPath != "" {
		up, err := loadUpstream(cfg.UpstreamCertPath, cfg.UpstreamKeyPath, cfg.UpstreamBundlePath, cfg.Clock())
		if err != nil {
			return nil, err
		}
		k.up = up
		cfg.Log.Info("using upstream CA", "subject", up.cert.Subject.String(), "not_after", up.cert.NotAfter,
			"trust_anchors", len(up.roots))
	}
	eng, op, err := authority.New(spec, authority.Config{TrustDomain: cfg.TrustDomain, Dir: cfg.Dir, Clock: cfg.Clock, Log: cfg.Log,
		Shared: cfg.Shared, SharedNotFound: cfg.SharedNotFound}, k)
	if err != nil {
		return nil, err
	}
	ca := &CA{td: cfg.TrustDomain, clock: cfg.Clock, log: cfg.Log, eng: eng}
	s := eng.Current()
	if a := op.Created; a != nil {
		ca.log.Info("created new CA authority", "trust_domain", ca.td.Name(), "key_type", cfg.KeyType,
			"id", a.ID(), "intermediate", !a.Key.root, "not_after", a.NotAfter(), "dir", cfg.Dir)
	} else {
		a := s.Active().Key
		kt, _ := keyTypeOf(a.signer)
		if kt != cfg.KeyType {
			ca.log.Warn("persisted CA key type differs from configuration; keeping the persisted key until the next rotation",
				"persisted", kt, "configured", cfg.KeyType, "dir", cfg.Dir)
		}
		ca.log.Info("loaded CA authorities", "trust_domain", ca.td.Name(), "key_type", kt, "active", a.id,
			"serial", a.cert.SerialNumber.Text(16), "not_after", a.cert.NotAfter,
			"authorities", len(s.All()), "legacy_layout", op.Legacy, "shared", cfg.Shared != nil)
	}
	ca.warnExpiry(s.Active().Key.cert)
	return ca, nil
}

// Run rotates the authorities until ctx is done: it wakes when the next
// step is due (and, with Config.Shared, every poll interval to pick up
// what other servers did), and calls Rotate. Errors are logged and retried.
func (ca *CA) Run(ctx context.Context) { ca.eng.Run(ctx) }

// SyncNow asks Run to adopt the shared state now rather than at its next
// poll (the store reported a write of SharedStateKey); it never blocks,
// and a burst of requests costs one round.
func (ca *CA) SyncNow() { ca.eng.SyncNow() }

// Rotate performs every rotation step due at the current clock time: with
// Config.Shared it first adopts what the servers agreed on; then it prunes
// expired old authorities, prepares a successor (published in Bundle at
// once) when half the active lifetime has passed, and activates the
// successor when its time has come. Every change is persisted (and shared)
// before it takes effect. Run calls it; tests with a fake clock call it
// directly.
func (ca *CA) Rotate(ctx context.Context) error { return ca.eng.Rotate(ctx) }

// warnExpiry logs when the active authority is expired, not yet valid, or
// within 1/6 of its lifetime from expiry.
func (ca *CA) warnExpiry(cert *x509.Certificate) {
	now := ca.clock()
	lifetime := cert.NotAfter.Sub(cert.NotBefore)
	left := cert.NotAfter.Sub(now)
	switch {
	case !now.Before(cert.NotAfter):
		ca.log.Warn("CA authority has expired; no SVIDs can be signed until Run replaces it",
			"not_after", cert.NotAfter)
	case now.Before(cert.NotBefore):
		ca.log.Warn("CA authority is not valid yet; check the clock", "not_before", cert.NotBefore, "now", now)
	case left < lifetime/6:
		ca.log.Warn("CA authority expires soon; Run rotates it", "not_after", cert.NotAfter, "remaining", left)
	}
}

// Bundle returns the trust anchors of the trust domain: the CA's own roots
// (active, prepared and not-yet-expired old ones), or with an upstream CA
// its roots. The slice is a fresh copy; the certificates must not be
// modified.
func (ca *CA) Bundle() []*x509.Certificate {
	return slices.Clone(ca.eng.Current().Published())
}

// BundleChanged returns a channel that is closed at the next change of
// Bundle's contents.
func (ca *CA) BundleChanged() <-chan struct{} {
	return ca.eng.Changed()
}

// BundleSequence returns a number that grows whenever Bundle's contents
// change; it survives restarts (and is shared through Config.Shared).
func (ca *CA) BundleSequence() uint64 {
	return ca.eng.Current().Sequence()
}

// Certificate returns the CA certificate that signs SVIDs now (the
// server's intermediate when there is an upstream CA).
func (ca *CA) Certificate() *x509.Certificate {
	return ca.eng.Current().Active().Key.cert
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
