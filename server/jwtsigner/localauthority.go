package jwtsigner

import (
	"context"
	"crypto"
	"errors"
	"time"

	"github.com/hallmarkid/hallmark/server/authority"
)

// Statuses of a key in KeyInfo.
const (
	StatusActive   = authority.StatusActive   // signs tokens
	StatusPrepared = authority.StatusPrepared // published, not yet signing
	StatusOld      = authority.StatusOld      // formerly active, published until its tokens have expired
)

// Errors of the operator actions; callers branch on them with errors.Is
// (the admin API maps them to NotFound and FailedPrecondition).
var (
	// ErrUnknownKey: no key has the given ID.
	ErrUnknownKey = errors.New("no such key")
	// ErrRefused: the action makes no sense for the key's status.
	ErrRefused = authority.ErrRefused
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

func infoOf(e *entry, status string) KeyInfo {
	k := e.Key
	return KeyInfo{ID: k.id, Status: status, Tainted: e.Tainted, Algorithm: string(k.alg), PublicKey: k.signer.Public(),
		NotBefore: k.notBefore, NotAfter: k.notAfter, PublishedAt: e.PublishedAt, ActivatedAt: e.ActivatedAt}
}

// Keys returns every key: the active one, the prepared one if any, then
// old ones, newest first.
func (s *Signer) Keys() []KeyInfo {
	var out []KeyInfo
	for _, l := range s.eng.Current().List() {
		out = append(out, infoOf(l.Entry, l.Status))
	}
	return out
}

// TaintedKeyIDs returns the IDs of the keys an operator tainted: JWT-SVIDs
// signed with them should be replaced. They stay in JWTAuthorities until
// revoked or expired.
func (s *Signer) TaintedKeyIDs() []string {
	var out []string
	for _, e := range s.eng.Current().All() {
		if e.Tainted {
			out = append(out, e.ID())
		}
	}
	return out
}

// PrepareKey creates the next key now, as rotation does at half the active
// key's lifetime, and publishes it at once. A prepared key that was
// waiting (it never signed) is replaced.
func (s *Signer) PrepareKey(ctx context.Context) (KeyInfo, error) {
	e, err := s.eng.Prepare(ctx)
	return infoOr(e, StatusPrepared, err)
}

// ActivateKey makes the prepared key id the one that signs, now; the
// formerly active key becomes old and stays published until its tokens
// have expired. Relying parties that have not yet fetched the prepared
// key (see PublishedAt) reject new tokens until they do.
func (s *Signer) ActivateKey(ctx context.Context, id string) (KeyInfo, error) {
	e, err := s.eng.Activate(ctx, id)
	return infoOr(e, StatusActive, err)
}

// TaintKey marks the old key id as compromised: it stays published, so
// its tokens keep validating until replaced, but Changed fires and
// TaintedKeyIDs lists it. Only an old key can be tainted: activate a
// successor first.
func (s *Signer) TaintKey(ctx context.Context, id string) (KeyInfo, error) {
	e, err := s.eng.Taint(ctx, id)
	return infoOr(e, StatusOld, err)
}

// RevokeKey removes the tainted old key id from JWTAuthorities (the JWT
// bundle agents and OIDC relying parties fetch): tokens it signed stop
// validating. It is remembered (in the shared state too) until it would
// have expired, so no server merges it back.
func (s *Signer) RevokeKey(ctx context.Context, id string) (KeyInfo, error) {
	e, err := s.eng.Revoke(ctx, id)
	return infoOr(e, StatusOld, err)
}

// infoOr describes the outcome of an action, with the status it leaves
// the key in.
func infoOr(e *entry, status string, err error) (KeyInfo, error) {
	if err != nil {
		return KeyInfo{}, err
	}
	return infoOf(e, status), nil
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
