package jwtsigner

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Signing algorithms accepted in Config.Algorithm.
const (
	ES256 = "ES256" // ECDSA P-256, SHA-256 (default)
	ES384 = "ES384" // ECDSA P-384, SHA-384
	RS256 = "RS256" // RSA-2048 PKCS#1 v1.5, SHA-256
)

// DefaultTTL is the lifetime of a JWT-SVID when neither the entry nor the
// caller sets one.
const DefaultTTL = 5 * time.Minute

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
	// Dir holds the persisted key; created with mode 0700. Required.
	Dir string
	// Algorithm of a newly created key: ES256 (default when empty), ES384 or
	// RS256. A persisted key keeps its own algorithm.
	Algorithm string
	// Issuer, when set, becomes the "iss" claim of every token (needed by
	// relying parties that use OIDC discovery).
	Issuer string
	// Clock returns the current time; nil means time.Now.
	Clock func() time.Time
	// Log receives key lifecycle messages; nil discards them.
	Log *slog.Logger
}

// key is one signing key. It is immutable.
type key struct {
	id     string
	alg    jose.SignatureAlgorithm
	signer crypto.Signer
	jose   jose.Signer
}

// Signer signs JWT-SVIDs. It is safe for concurrent use.
type Signer struct {
	cfg Config

	mu      sync.RWMutex // guards the fields that follow
	active  *key
	keys    []*key // published keys, active included
	changed chan struct{}
}

// JWTSVIDParams describes one JWT-SVID to sign.
type JWTSVIDParams struct {
	// ID is the subject; it must be in the signer's trust domain.
	ID spiffeid.ID
	// Audience is the "aud" claim: 1..MaxAudiences non-empty values.
	Audience []string
	// TTL is the token lifetime; 0 means DefaultTTL. At most MaxTTL.
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

// New loads the key persisted in cfg.Dir, or creates and persists a new one
// when there is none. Corrupt or loosely protected files are reported as
// errors and never overwritten.
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
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if err := prepareDir(cfg.Dir); err != nil {
		return nil, err
	}
	sk, err := load(cfg.Dir)
	switch {
	case errors.Is(err, errNoKey):
		if sk, err = generate(cfg.Algorithm); err != nil {
			return nil, fmt.Errorf("jwtsigner: generate key: %w", err)
		}
		if err := save(cfg.Dir, sk); err != nil {
			return nil, err
		}
		cfg.Log.Info("Created JWT signing key", "algorithm", cfg.Algorithm, "dir", cfg.Dir)
	case err != nil:
		return nil, err
	}
	k, err := newKey(sk)
	if err != nil {
		return nil, fmt.Errorf("jwtsigner: %w", err)
	}
	if string(k.alg) != cfg.Algorithm {
		cfg.Log.Warn("Persisted JWT signing key has another algorithm than configured; keeping the persisted key",
			"persisted", k.alg, "configured", cfg.Algorithm, "dir", cfg.Dir)
	}
	cfg.Log.Info("JWT signing key ready", "key_id", k.id, "algorithm", k.alg)
	return &Signer{cfg: cfg, active: k, keys: []*key{k}, changed: make(chan struct{})}, nil
}

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

// SignJWTSVID signs a JWT-SVID for p.ID. The header carries the active
// key's ID and typ JWT; the claims are sub, aud, iat, exp (and iss when
// configured).
func (s *Signer) SignJWTSVID(_ context.Context, p JWTSVIDParams) (JWTSVID, error) {
	if err := s.checkParams(p); err != nil {
		return JWTSVID{}, fmt.Errorf("jwtsigner: %w", err)
	}
	ttl := p.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	now := s.cfg.Clock().Truncate(time.Second)
	exp := now.Add(ttl)
	claims := jwt.Claims{
		Subject:  p.ID.String(),
		Audience: jwt.Audience(p.Audience),
		IssuedAt: jwt.NewNumericDate(now),
		Expiry:   jwt.NewNumericDate(exp),
		Issuer:   s.cfg.Issuer,
	}
	s.mu.RLock()
	k := s.active
	s.mu.RUnlock()
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

// JWTAuthorities returns the published public keys by key ID: the trust
// domain's JWT bundle. The map is a copy.
func (s *Signer) JWTAuthorities() map[string]crypto.PublicKey {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]crypto.PublicKey, len(s.keys))
	for _, k := range s.keys {
		out[k.id] = k.signer.Public()
	}
	return out
}

// ActiveKeyID returns the ID of the key new tokens are signed with.
func (s *Signer) ActiveKeyID() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.active.id
}

// Changed returns a channel closed at the next change of the published keys.
func (s *Signer) Changed() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.changed
}
