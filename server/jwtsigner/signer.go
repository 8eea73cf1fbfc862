package jwtsigner

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"time"
	"unicode/utf8"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/server/authority"
)

// Signing algorithms accepted in Config.Algorithm.
const (
	ES256 = "ES256" // ECDSA P-256, SHA-256 (default)
	ES384 = "ES384" // ECDSA P-384, SHA-384
	RS256 = "RS256" // RSA-2048 PKCS#1 v1.5, SHA-256
)

// DefaultTTL is the lifetime of a JWT-SVID when neither the entry nor the
// caller sets one, and Config.DefaultTTL is 0.
const DefaultTTL = 5 * time.Minute

// DefaultKeyTTL is the lifetime of a new signing key when Config.KeyTTL is
// 0. Keys are replaced at 5/6 of their lifetime.
const DefaultKeyTTL = 24 * time.Hour

// Bounds on what a JWT-SVID may carry; requests beyond them are refused.
const (
	MaxAudiences      = 32
	MaxAudienceLength = 1024
	MaxTTL            = 24 * time.Hour
)

// Config configures a Signer.
type Config struct {
	// TrustDomain is the trust domain whose SPIFFE IDs the signer signs.
	// Required.
	TrustDomain spiffeid.TrustDomain
	// Dir holds the persisted keys; created with mode 0700. Required.
	Dir string
	// Algorithm of newly created keys: ES256 (default when empty), ES384 or
	// RS256. A persisted key keeps its own algorithm; the next key made by
	// rotation has the configured one.
	Algorithm string
	// KeyTTL is the lifetime of a newly created key; 0 means DefaultKeyTTL.
	// No token outlives the key that signed it.
	KeyTTL time.Duration
	// DefaultTTL is the lifetime of a token whose caller asks for none;
	// 0 means the package's DefaultTTL. At most MaxTTL.
	DefaultTTL time.Duration
	// Issuer, when set, becomes the "iss" claim of every token (needed by
	// relying parties that use OIDC discovery).
	Issuer string
	// Clock returns the current time; nil means time.Now.
	Clock func() time.Time
	// Log receives key lifecycle messages; nil discards them.
	Log *slog.Logger

	// Shared, when set, is where servers sharing one database agree on the
	// key set (private keys included, as for the CA). SharedNotFound is
	// the error GetKV returns (errors.Is) for an absent key, e.g.
	// datastore.ErrNotFound.
	Shared         KVStore
	SharedNotFound error
}

// Signer signs JWT-SVIDs and rotates its keys. It is safe for concurrent
// use.
type Signer struct {
	cfg Config
	eng *authority.Engine[*key, entryDoc, map[string]crypto.PublicKey]
}

// JWTSVIDParams describes one JWT-SVID to sign.
type JWTSVIDParams struct {
	// ID is the subject; it must be in the signer's trust domain.
	ID spiffeid.ID
	// Audience is the "aud" claim: 1..MaxAudiences non-empty values.
	Audience []string
	// TTL is the token lifetime; 0 means Config.DefaultTTL. At most MaxTTL.
	// The token never outlives the signing key.
	TTL time.Duration
}

// JWTSVID is a signed token and what it says.
type JWTSVID struct {
	Token     string
	ID        spiffeid.ID
	Audience  []string
	KeyID     string
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// New loads the keys persisted in cfg.Dir (and, with cfg.Shared, the state
// the servers share, which wins), or creates and persists a new key when
// there is none. A restart keeps the same keys and roles. Corrupt or
// loosely protected files are reported as errors and never overwritten.
// New does not rotate: Run does.
func New(cfg Config) (*Signer, error) {
	if cfg.TrustDomain.IsZero() {
		return nil, errors.New("jwtsigner: TrustDomain is required")
	}
	if cfg.Algorithm == "" {
		cfg.Algorithm = ES256
	}
	if _, err := algorithm(cfg.Algorithm); err != nil {
		return nil, fmt.Errorf("jwtsigner: %w", err)
	}
	if cfg.KeyTTL < 0 {
		return nil, fmt.Errorf("jwtsigner: negative KeyTTL %s", cfg.KeyTTL)
	}
	if cfg.KeyTTL == 0 {
		cfg.KeyTTL = DefaultKeyTTL
	}
	if cfg.DefaultTTL < 0 || cfg.DefaultTTL > MaxTTL {
		return nil, fmt.Errorf("jwtsigner: DefaultTTL %s out of range (0, %s]", cfg.DefaultTTL, MaxTTL)
	}
	if cfg.DefaultTTL == 0 {
		cfg.DefaultTTL = DefaultTTL
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Shared != nil && cfg.SharedNotFound == nil {
		return nil, errors.New("jwtsigner: SharedNotFound is required with Shared")
	}
	if err := files.PrepareDir(cfg.Dir, true); err != nil {
		return nil, err
	}
	eng, op, err := authority.New(spec, authority.Config{TrustDomain: cfg.TrustDomain, Dir: cfg.Dir, Clock: cfg.Clock, Log: cfg.Log,
		Shared: cfg.Shared, SharedNotFound: cfg.SharedNotFound}, &kind{alg: cfg.Algorithm, keyTTL: cfg.KeyTTL, dir: cfg.Dir})
	if err != nil {
		return nil, err
	}
	if e := op.Created; e != nil {
		cfg.Log.Info("Created JWT signing key", "key_id", e.ID(), "algorithm", e.Key.alg, "not_after", e.Key.notAfter, "dir", cfg.Dir)
	} else {
		cur := eng.Current()
		a := cur.Active().Key
		if string(a.alg) != cfg.Algorithm {
			cfg.Log.Warn("Persisted JWT signing key has another algorithm than configured; keeping it until the next rotation",
				"persisted", a.alg, "configured", cfg.Algorithm, "dir", cfg.Dir)
		}
		cfg.Log.Info("Loaded JWT signing keys", "active", a.id, "algorithm", a.alg,
			"not_after", a.notAfter, "keys", len(cur.All()), "single_key_layout", op.Legacy, "shared", cfg.Shared != nil)
	}
	return &Signer{cfg: cfg, eng: eng}, nil
}

// Run rotates the keys until ctx is done: it wakes when the next step is
// due (and, with Config.Shared, every poll interval to pick up what other
// servers did) and calls Rotate. Errors are logged and retried.
func (s *Signer) Run(ctx context.Context) { s.eng.Run(ctx) }

// SyncNow asks Run to adopt the shared state now rather than at its next
// poll (the store reported a write of SharedStateKey); it never blocks,
// and a burst of requests costs one round.
func (s *Signer) SyncNow() { s.eng.SyncNow() }

// Rotate performs every rotation step due at the current clock time: with
// Config.Shared it first adopts what the servers agreed on; then it prunes
// expired old keys, prepares a successor (published at once) when half the
// active lifetime has passed, and activates the successor when its time
// has come. Every change is persisted (and shared) before it takes effect,
// and closes the Changed channel. Run calls it; tests with a fake clock
// call it directly.
func (s *Signer) Rotate(ctx context.Context) error { return s.eng.Rotate(ctx) }

// newKey derives the key ID and builds the JOSE signer for sk.
func newKey(sk crypto.Signer) (*key, error) {
	alg, err := algorithmOf(sk)
	if err != nil {
		return nil, err
	}
	kid, err := KeyID(sk.Public())
	if err != nil {
		return nil, err
	}
	js, err := jose.NewSigner(
		jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: sk, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		return nil, fmt.Errorf("signer: %w", err)
	}
	return &key{id: kid, alg: alg, signer: sk, jose: js}, nil
}

// KeyID returns the key ID of pub: its RFC 7638 JWK SHA-256 thumbprint,
// base64url without padding.
func KeyID(pub crypto.PublicKey) (string, error) {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("key ID: %w", err)
	}
	return b64(tp), nil
}

// SignJWTSVID signs a JWT-SVID for p.ID with the active key. The header
// carries the key's ID and typ JWT; the claims are sub, aud, iat, exp (and
// iss when configured). exp is capped at the key's expiry, so every token
// expires before its key leaves the bundle.
func (s *Signer) SignJWTSVID(_ context.Context, p JWTSVIDParams) (JWTSVID, error) {
	if err := s.checkParams(p); err != nil {
		return JWTSVID{}, fmt.Errorf("jwtsigner: %w", err)
	}
	ttl := p.TTL
	if ttl == 0 {
		ttl = s.cfg.DefaultTTL
	}
	k := s.eng.Current().Active().Key
	now := s.cfg.Clock().Truncate(time.Second)
	exp := now.Add(ttl)
	if limit := k.notAfter.Truncate(time.Second); exp.After(limit) {
		exp = limit
	}
	if !exp.After(now) {
		return JWTSVID{}, fmt.Errorf("jwtsigner: signing key %s expired at %s (is rotation running?)", k.id, k.notAfter.UTC().Format(time.RFC3339))
	}
	claims := jwt.Claims{
		Subject:  p.ID.String(),
		Audience: jwt.Audience(p.Audience),
		IssuedAt: jwt.NewNumericDate(now),
		Expiry:   jwt.NewNumericDate(exp),
		Issuer:   s.cfg.Issuer,
	}
	tok, err := jwt.Signed(k.jose).Claims(claims).Serialize()
	if err != nil {
		return JWTSVID{}, fmt.Errorf("jwtsigner: sign: %w", err)
	}
	return JWTSVID{Token: tok, ID: p.ID, Audience: append([]string(nil), p.Audience...), KeyID: k.id, IssuedAt: now, ExpiresAt: exp}, nil
}

func (s *Signer) checkParams(p JWTSVIDParams) error {
	if p.ID.IsZero() {
		return errors.New("SPIFFE ID is required")
	}
	if p.ID.TrustDomain() != s.cfg.TrustDomain {
		return fmt.Errorf("SPIFFE ID %q is not in trust domain %q", p.ID, s.cfg.TrustDomain)
	}
	if p.ID.Path() == "" {
		return fmt.Errorf("SPIFFE ID %q has no path", p.ID)
	}
	if err := CheckAudience(p.Audience); err != nil {
		return err
	}
	if p.TTL < 0 || p.TTL > MaxTTL {
		return fmt.Errorf("TTL %s out of range (0, %s]", p.TTL, MaxTTL)
	}
	return nil
}

// CheckAudience validates a requested audience list: 1..MaxAudiences
// values, each non-empty valid UTF-8 of at most MaxAudienceLength bytes.
func CheckAudience(aud []string) error {
	if len(aud) == 0 {
		return errors.New("audience is required")
	}
	if len(aud) > MaxAudiences {
		return fmt.Errorf("%d audiences, at most %d allowed", len(aud), MaxAudiences)
	}
	for _, a := range aud {
		if a == "" {
			return errors.New("empty audience value")
		}
		if len(a) > MaxAudienceLength {
			return fmt.Errorf("audience value of %d bytes, at most %d allowed", len(a), MaxAudienceLength)
		}
		if !utf8.ValidString(a) {
			return errors.New("audience value is not valid UTF-8")
		}
	}
	return nil
}

// JWTAuthorities returns the published public keys by key ID — the active
// key, the prepared next key and old keys whose tokens may still be valid:
// the trust domain's JWT bundle. The map is a copy.
func (s *Signer) JWTAuthorities() map[string]crypto.PublicKey {
	return maps.Clone(s.eng.Current().Published())
}

// ActiveKeyID returns the ID of the key new tokens are signed with.
func (s *Signer) ActiveKeyID() string {
	return s.eng.Current().Active().ID()
}

// NextKeyID returns the ID of the prepared (published, not yet active)
// key, or "" when there is none.
func (s *Signer) NextKeyID() string {
	if n := s.eng.Current().Next(); n != nil {
		return n.ID()
	}
	return ""
}

// Changed returns a channel closed at the next change of the published
// keys or of the active key: when a key is prepared, activated or pruned,
// or another server's change is adopted.
func (s *Signer) Changed() <-chan struct{} {
	return s.eng.Changed()
}
