package jwtsigner

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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

// sharedTimeout bounds one read or write of the shared state.
const sharedTimeout = 10 * time.Second

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

// key is one signing key. Its fields never change after publication:
// withTimes makes a modified copy.
type key struct {
	id     string
	alg    jose.SignatureAlgorithm
	signer crypto.Signer
	jose   jose.Signer

	notBefore, notAfter      time.Time // its lifetime
	publishedAt, activatedAt time.Time // activatedAt is zero until it signs
	// tainted reports that an operator marked this (old) key as
	// compromised: tokens it signed must be replaced.
	tainted bool
}

func (k *key) lifetime() time.Duration    { return k.notAfter.Sub(k.notBefore) }
func (k *key) expired(now time.Time) bool { return !now.Before(k.notAfter) }
func (k *key) withTimes(pub, act time.Time) *key {
	c := *k
	c.publishedAt, c.activatedAt = pub, act
	return &c
}

// snapshot is the signer's whole key state; it is replaced, never mutated.
type snapshot struct {
	version uint64
	active  *key
	next    *key   // nil when none is prepared
	old     []*key // newest first
	pub     map[string]crypto.PublicKey
	set     string // identifies the keys, their roles and taints
	// revoked maps the IDs of keys an operator revoked to their expiry:
	// no server may merge them back. Entries go once expired.
	revoked map[string]time.Time
}

func newSnapshot(version uint64, active, next *key, old []*key) *snapshot {
	old = slices.Clone(old)
	slices.SortStableFunc(old, func(a, b *key) int { return b.notBefore.Compare(a.notBefore) })
	s := &snapshot{version: version, active: active, next: next, old: old, pub: map[string]crypto.PublicKey{}}
	roles := []string{"active:" + active.id}
	if next != nil {
		roles = append(roles, "next:"+next.id)
	}
	for _, k := range old {
		roles = append(roles, "old:"+k.id)
		if k.tainted {
			roles = append(roles, "tainted:"+k.id)
		}
	}
	for _, k := range s.all() {
		s.pub[k.id] = k.signer.Public()
	}
	slices.Sort(roles)
	s.set = strings.Join(roles, ",")
	return s
}

func (s *snapshot) all() []*key {
	out := []*key{s.active}
	if s.next != nil {
		out = append(out, s.next)
	}
	return append(out, s.old...)
}

func (s *snapshot) find(id string) *key {
	for _, k := range s.all() {
		if k.id == id {
			return k
		}
	}
	return nil
}

// Signer signs JWT-SVIDs and rotates its keys. It is safe for concurrent
// use.
type Signer struct {
	cfg Config

	cur atomic.Pointer[snapshot]

	mu sync.Mutex // serialises state changes (Rotate, syncShared); guards sharedSeen
	// sharedSeen is the shared state as this signer last read or wrote it
	// (nil: absent): the value its next write must replace.
	sharedSeen []byte

	chMu    sync.Mutex // guards changed
	changed chan struct{}
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
	if err := prepareDir(cfg.Dir); err != nil {
		return nil, err
	}
	s := &Signer{cfg: cfg, changed: make(chan struct{})}
	now := cfg.Clock()

	local, legacy, err := s.loadLocal(now)
	if err != nil {
		return nil, err
	}
	base := local
	sharedMissing := false
	if cfg.Shared != nil {
		ds, raw, err := s.readShared(context.Background())
		s.sharedSeen = raw
		switch {
		case errors.Is(err, errSharedMissing):
			sharedMissing = true
		case err != nil && local == nil:
			return nil, err
		case err != nil:
			cfg.Log.Warn("Shared JWT key state unreadable; starting from the local copy", "error", err)
		default:
			base = ds
		}
	}

	var snap *snapshot
	dirty := false
	if base == nil {
		k, err := s.mint(now)
		if err != nil {
			return nil, err
		}
		k.activatedAt = now
		snap = newSnapshot(1, k, nil, nil)
		if cfg.Shared == nil {
			// The single-key layout, until the first rotation.
			if err := saveKeyFile(cfg.Dir, k.signer); err != nil {
				return nil, err
			}
		} else {
			dirty = true
		}
		cfg.Log.Info("Created JWT signing key", "key_id", k.id, "algorithm", k.alg, "not_after", k.notAfter, "dir", cfg.Dir)
	} else {
		snap = s.fromState(base, nil, now)
		dirty = sharedMissing
		if string(snap.active.alg) != cfg.Algorithm {
			cfg.Log.Warn("Persisted JWT signing key has another algorithm than configured; keeping it until the next rotation",
				"persisted", snap.active.alg, "configured", cfg.Algorithm, "dir", cfg.Dir)
		}
		cfg.Log.Info("Loaded JWT signing keys", "active", snap.active.id, "algorithm", snap.active.alg,
			"not_after", snap.active.notAfter, "keys", len(snap.all()), "single_key_layout", legacy, "shared", cfg.Shared != nil)
	}
	if base != nil && base != local && local != nil {
		// Keys this server signed with survive adoption of the shared
		// state, so that what they signed keeps verifying.
		var had []*key
		for _, e := range local.entries {
			had = append(had, e.k)
		}
		if k := s.keepSigned(snap, had, now); k != snap {
			snap, dirty = k, true
		}
	}
	lost := false
	switch {
	case dirty:
		snap.version++
		err := s.persist(context.Background(), snap)
		if lost = errors.Is(err, errSwapLost); err != nil && !lost {
			return nil, err
		}
	case base != local:
		// Adopted the shared state as it is: keep a local copy.
		data, err := encodeState(cfg.TrustDomain, snap)
		if err != nil {
			return nil, err
		}
		if err := writeStateFile(cfg.Dir, data); err != nil {
			return nil, err
		}
	}
	s.cur.Store(snap)
	if cfg.Shared != nil && (sharedMissing || lost) {
		// Another server may have written at the same moment (lost: it
		// did): converge on whatever the store holds now.
		s.mu.Lock()
		err := s.retrySwap(func() error { return s.syncShared(context.Background(), now) })
		s.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
	return s, nil
}

// loadLocal reads the state in Dir: the state file, else the single key
// file of earlier versions, else nothing (nil, no error). A single key
// counts as created at its file's modification time, but no earlier than
// half a KeyTTL ago: an old key is then replaced on the normal schedule
// rather than dropped at once with tokens still in flight.
func (s *Signer) loadLocal(now time.Time) (ds *decodedState, legacy bool, err error) {
	data, err := readStateFile(s.cfg.Dir)
	switch {
	case err == nil:
		ds, err := decodeState(data, s.cfg.TrustDomain)
		if err != nil {
			return nil, false, fmt.Errorf("jwtsigner: state file %s/%s: %w", s.cfg.Dir, StateFileName, err)
		}
		return ds, false, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, false, err
	}
	sk, mtime, err := loadKeyFile(s.cfg.Dir)
	switch {
	case errors.Is(err, errNoKey):
		return nil, false, nil
	case err != nil:
		return nil, false, err
	}
	k, err := newKey(sk)
	if err != nil {
		return nil, false, fmt.Errorf("jwtsigner: %w", err)
	}
	created := mtime
	if floor := now.Add(-s.cfg.KeyTTL / 2); created.Before(floor) {
		created = floor
	}
	if created.After(now) {
		created = now
	}
	k.notBefore, k.notAfter, k.publishedAt, k.activatedAt = created, created.Add(s.cfg.KeyTTL), created, created
	return &decodedState{entries: []stateEntry{{k: k, status: statusActive}}}, true, nil
}

// mint creates a new key of the configured algorithm valid from now for
// KeyTTL, published now.
func (s *Signer) mint(now time.Time) (*key, error) {
	sk, err := generate(s.cfg.Algorithm)
	if err != nil {
		return nil, fmt.Errorf("jwtsigner: generate key: %w", err)
	}
	k, err := newKey(sk)
	if err != nil {
		return nil, fmt.Errorf("jwtsigner: %w", err)
	}
	k.notBefore, k.notAfter, k.publishedAt = now, now.Add(s.cfg.KeyTTL), now
	return k, nil
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
	k := s.cur.Load().active
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
	return maps.Clone(s.cur.Load().pub)
}

// ActiveKeyID returns the ID of the key new tokens are signed with.
func (s *Signer) ActiveKeyID() string {
	return s.cur.Load().active.id
}

// NextKeyID returns the ID of the prepared (published, not yet active)
// key, or "" when there is none.
func (s *Signer) NextKeyID() string {
	if n := s.cur.Load().next; n != nil {
		return n.id
	}
	return ""
}

// Changed returns a channel closed at the next change of the published
// keys or of the active key: when a key is prepared, activated or pruned,
// or another server's change is adopted.
func (s *Signer) Changed() <-chan struct{} {
	s.chMu.Lock()
	defer s.chMu.Unlock()
	return s.changed
}
