package jwtsigner

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/hallmarkid/hallmark/internal/rotation"
)

// Statuses of a key in KeyInfo.
const (
	StatusActive   = "active"   // signs tokens
	StatusPrepared = "prepared" // published, not yet signing
	StatusOld      = "old"      // formerly active, published until its tokens have expired
)

// Errors of the operator actions; callers branch on them with errors.Is
// (the admin API maps them to NotFound and FailedPrecondition).
var (
	// ErrUnknownKey: no key has the given ID.
	ErrUnknownKey = errors.New("no such key")
	// ErrRefused: the action makes no sense for the key's status.
	ErrRefused = errors.New("refused")
)

// KeyInfo describes one signing key.
type KeyInfo struct {
	// ID is the key ID (kid): its RFC 7638 thumbprint.
	ID string
	// Status is StatusActive, StatusPrepared or StatusOld.
	Status string
	// Tainted reports that an operator marked it compromised: tokens it
	// signed must be replaced; it stays published until revoked.
	Tainted bool
	// Algorithm is the JOSE algorithm: ES256, ES384 or RS256.
	Algorithm string
	// PublicKey is the key's public half.
	PublicKey crypto.PublicKey
	// NotBefore and NotAfter bound its lifetime (no token it signs
	// outlives NotAfter); PublishedAt is when this server first published
	// it, ActivatedAt when it first signed (zero if it never did).
	NotBefore, NotAfter, PublishedAt, ActivatedAt time.Time
}

func infoOf(k *key, status string) KeyInfo {
	return KeyInfo{ID: k.id, Status: status, Tainted: k.tainted, Algorithm: string(k.alg), PublicKey: k.signer.Public(),
		NotBefore: k.notBefore, NotAfter: k.notAfter, PublishedAt: k.publishedAt, ActivatedAt: k.activatedAt}
}

// Keys returns every key: the active one, the prepared one if any, then
// old ones, newest first.
func (s *Signer) Keys() []KeyInfo {
	cur := s.cur.Load()
	out := []KeyInfo{infoOf(cur.active, StatusActive)}
	if cur.next != nil {
		out = append(out, infoOf(cur.next, StatusPrepared))
	}
	for _, k := range cur.old {
		out = append(out, infoOf(k, StatusOld))
	}
	return out
}

// TaintedKeyIDs returns the IDs of the keys an operator tainted: JWT-SVIDs
// signed with them should be replaced. They stay in JWTAuthorities until
// revoked or expired.
func (s *Signer) TaintedKeyIDs() []string {
	var out []string
	for _, k := range s.cur.Load().all() {
		if k.tainted {
			out = append(out, k.id)
		}
	}
	return out
}

// keyRoles is the key set an operator action builds.
type keyRoles struct {
	active, next *key
	old          []*key
	revoked      map[string]time.Time
}

// change applies an operator action: like Rotate it first adopts the
// shared state (so the action applies to what the servers agreed on),
// then persists (and shares) the result before publishing it, which
// closes Changed.
//
// When another server changes the shared state first, the action is
// applied again to what it wrote.
func (s *Signer) change(ctx context.Context, f func(cur *snapshot, now time.Time) (keyRoles, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.retrySwap(func() error { return s.changeOnce(ctx, f) })
}

// changeOnce is one round of change. The caller holds mu.
func (s *Signer) changeOnce(ctx context.Context, f func(cur *snapshot, now time.Time) (keyRoles, error)) error {
	now := s.cfg.Clock()
	if s.cfg.Shared != nil {
		if err := s.syncShared(ctx, now); err != nil {
			return err
		}
	}
	r, err := f(s.cur.Load(), now)
	if err != nil {
		return err
	}
	snap := newSnapshot(s.cur.Load().version+1, r.active, r.next, r.old)
	snap.revoked = rotation.LiveRevoked(r.revoked, now)
	if err := s.persist(ctx, snap); err != nil {
		return err
	}
	s.publish(snap)
	return nil
}

// PrepareKey creates the next key now, as rotation does at half the active
// key's lifetime, and publishes it at once. A prepared key that was
// waiting (it never signed) is replaced.
func (s *Signer) PrepareKey(ctx context.Context) (KeyInfo, error) {
	var prepared, replaced *key
	err := s.change(ctx, func(cur *snapshot, now time.Time) (keyRoles, error) {
		n, err := s.mint(now)
		if err != nil {
			return keyRoles{}, fmt.Errorf("jwtsigner: prepare key: %w", err)
		}
		prepared, replaced = n, cur.next
		return keyRoles{active: cur.active, next: n, old: liveKeys(cur.old, now), revoked: cur.revoked}, nil
	})
	if err != nil {
		return KeyInfo{}, err
	}
	if replaced != nil {
		s.cfg.Log.Warn("Prepared JWT signing key replaced by an operator; it never signed", "replaced", replaced.id, "key_id", prepared.id)
	}
	s.cfg.Log.Info("Prepared next JWT signing key at an operator's request; published in the JWT bundle", "key_id", prepared.id,
		"algorithm", prepared.alg, "not_after", prepared.notAfter)
	return infoOf(prepared, StatusPrepared), nil
}

// ActivateKey makes the prepared key id the one that signs, now; the
// formerly active key becomes old and stays published until its tokens
// have expired. Relying parties that have not yet fetched the prepared
// key (see PublishedAt) reject new tokens until they do.
func (s *Signer) ActivateKey(ctx context.Context, id string) (KeyInfo, error) {
	var activated, previous *key
	err := s.change(ctx, func(cur *snapshot, now time.Time) (keyRoles, error) {
		k, status, err := lookupKey(cur, id, "activate")
		if err != nil {
			if errors.Is(err, ErrUnknownKey) && cur.next == nil {
				return keyRoles{}, fmt.Errorf("%w (and none is prepared: run prepare first)", err)
			}
			return keyRoles{}, err
		}
		switch {
		case status == StatusActive:
			return keyRoles{}, fmt.Errorf("jwtsigner: activate key %s: %w: it is already the active key", id, ErrRefused)
		case status == StatusOld:
			return keyRoles{}, fmt.Errorf("jwtsigner: activate key %s: %w: it is an old key; only the prepared one can be activated", id, ErrRefused)
		case k.expired(now):
			return keyRoles{}, fmt.Errorf("jwtsigner: activate key %s: %w: it expired at %s", id, ErrRefused, k.notAfter.UTC().Format(time.RFC3339))
		}
		previous = cur.active
		activated = k.withTimes(k.publishedAt, now)
		old := liveKeys(cur.old, now)
		if !cur.active.expired(now) {
			old = append([]*key{cur.active}, old...)
		}
		return keyRoles{active: activated, old: old, revoked: cur.revoked}, nil
	})
	if err != nil {
		return KeyInfo{}, err
	}
	s.cfg.Log.Info("Activated JWT signing key at an operator's request", "key_id", activated.id, "previous", previous.id,
		"published_for", activated.activatedAt.Sub(activated.publishedAt).Round(time.Millisecond), "not_after", activated.notAfter)
	return infoOf(activated, StatusActive), nil
}

// TaintKey marks the old key id as compromised: it stays published, so
// its tokens keep validating until replaced, but Changed fires and
// TaintedKeyIDs lists it. Only an old key can be tainted: activate a
// successor first.
func (s *Signer) TaintKey(ctx context.Context, id string) (KeyInfo, error) {
	var tainted *key
	err := s.change(ctx, func(cur *snapshot, now time.Time) (keyRoles, error) {
		k, status, err := lookupKey(cur, id, "taint")
		if err != nil {
			return keyRoles{}, err
		}
		switch {
		case status == StatusActive:
			return keyRoles{}, fmt.Errorf("jwtsigner: taint key %s: %w: it is the active key; prepare and activate a successor first", id, ErrRefused)
		case status == StatusPrepared:
			return keyRoles{}, fmt.Errorf("jwtsigner: taint key %s: %w: it is prepared and has signed nothing; prepare another to replace it", id, ErrRefused)
		case k.tainted:
			return keyRoles{}, fmt.Errorf("jwtsigner: taint key %s: %w: it is already tainted", id, ErrRefused)
		case k.expired(now):
			return keyRoles{}, fmt.Errorf("jwtsigner: taint key %s: %w: it expired at %s", id, ErrRefused, k.notAfter.UTC().Format(time.RFC3339))
		}
		c := *k
		c.tainted = true
		tainted = &c
		old := liveKeys(cur.old, now)
		for i, o := range old {
			if o.id == id {
				old[i] = tainted
			}
		}
		return keyRoles{active: cur.active, next: cur.next, old: old, revoked: cur.revoked}, nil
	})
	if err != nil {
		return KeyInfo{}, err
	}
	s.cfg.Log.Warn("JWT signing key tainted by an operator; tokens it signed should be replaced", "key_id", tainted.id,
		"not_after", tainted.notAfter)
	return infoOf(tainted, StatusOld), nil
}

// RevokeKey removes the tainted old key id from JWTAuthorities (the JWT
// bundle agents and OIDC relying parties fetch): tokens it signed stop
// validating. It is remembered (in the shared state too) until it would
// have expired, so no server merges it back.
func (s *Signer) RevokeKey(ctx context.Context, id string) (KeyInfo, error) {
	var revoked *key
	err := s.change(ctx, func(cur *snapshot, now time.Time) (keyRoles, error) {
		if _, ok := cur.revoked[id]; ok {
			return keyRoles{}, fmt.Errorf("jwtsigner: revoke key %s: %w: it is already revoked", id, ErrRefused)
		}
		k, status, err := lookupKey(cur, id, "revoke")
		if err != nil {
			return keyRoles{}, err
		}
		switch {
		case status == StatusActive:
			return keyRoles{}, fmt.Errorf("jwtsigner: revoke key %s: %w: it is the active key; prepare and activate a successor, then taint it first", id, ErrRefused)
		case status == StatusPrepared:
			return keyRoles{}, fmt.Errorf("jwtsigner: revoke key %s: %w: it is prepared, not tainted; prepare another to replace it", id, ErrRefused)
		case !k.tainted:
			return keyRoles{}, fmt.Errorf("jwtsigner: revoke key %s: %w: it is not tainted; taint it first", id, ErrRefused)
		}
		revoked = k
		var old []*key
		for _, o := range liveKeys(cur.old, now) {
			if o.id != id {
				old = append(old, o)
			}
		}
		rv := maps.Clone(cur.revoked)
		if rv == nil {
			rv = map[string]time.Time{}
		}
		rv[id] = k.notAfter
		return keyRoles{active: cur.active, next: cur.next, old: old, revoked: rv}, nil
	})
	if err != nil {
		return KeyInfo{}, err
	}
	s.cfg.Log.Warn("JWT signing key revoked by an operator; removed from the JWT bundle", "key_id", revoked.id)
	return infoOf(revoked, StatusOld), nil
}

// lookupKey finds id in s and names its status, or returns an error
// wrapping ErrUnknownKey.
func lookupKey(s *snapshot, id, verb string) (*key, string, error) {
	switch {
	case id == "":
		return nil, "", fmt.Errorf("jwtsigner: %s key: %w: a key ID is required", verb, ErrUnknownKey)
	case s.active.id == id:
		return s.active, StatusActive, nil
	case s.next != nil && s.next.id == id:
		return s.next, StatusPrepared, nil
	}
	if i := slices.IndexFunc(s.old, func(k *key) bool { return k.id == id }); i >= 0 {
		return s.old[i], StatusOld, nil
	}
	return nil, "", fmt.Errorf("jwtsigner: %s key %s: %w", verb, id, ErrUnknownKey)
}

// liveKeys returns a copy of keys without the expired ones.
func liveKeys(keys []*key, now time.Time) []*key {
	var out []*key
	for _, k := range keys {
		if !k.expired(now) {
			out = append(out, k)
		}
	}
	return out
}

// validKeyID reports whether id has the form of a key ID: 1 to 128
// base64url characters (a SHA-256 thumbprint has 43).
func validKeyID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for _, c := range id {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}
