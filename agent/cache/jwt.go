package cache

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/registration"
)

// MaxJWTSVIDs bounds the tokens a JWTStore keeps; beyond it, stale tokens
// are pruned first, then arbitrary ones (they are re-minted on demand).
const MaxJWTSVIDs = 10000

// JWTSVID is a JWT-SVID minted by the server for a workload.
type JWTSVID struct {
	Token     string
	ID        spiffeid.ID
	IssuedAt  time.Time
	ExpiresAt time.Time
	// KeyID is the "kid" of the token's header (set by PutToken).
	KeyID string
}

// tokenKeyID returns the "kid" of a compact JWS's protected header, "" if
// it has none or cannot be read.
func tokenKeyID(token string) string {
	head, _, ok := strings.Cut(token, ".")
	if !ok || len(head) > 4096 {
		return ""
	}
	raw, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return ""
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if json.Unmarshal(raw, &h) != nil {
		return ""
	}
	return h.Kid
}

// fresh reports whether t is before its half-life at now.
func (t *JWTSVID) fresh(now time.Time) bool {
	return now.Before(t.IssuedAt.Add(t.ExpiresAt.Sub(t.IssuedAt) / 2))
}

type jwtKey struct {
	entryID  string
	revision int64
	audience string // AudienceKey
}

// JWTStore holds the trust domain's JWT bundle and the JWT-SVIDs minted for
// workloads, keyed by entry (and its revision) and audience set. It is safe
// for concurrent use.
type JWTStore struct {
	mu      sync.RWMutex // guards the fields that follow
	bundle  *jwtbundle.Bundle
	changed chan struct{}
	tokens  map[jwtKey]*JWTSVID
}

// NewJWTStore returns an empty store.
func NewJWTStore() *JWTStore {
	return &JWTStore{changed: make(chan struct{}), tokens: make(map[jwtKey]*JWTSVID)}
}

// SetBundle replaces the JWT bundle; watchers are told only when the keys
// actually changed.
func (s *JWTStore) SetBundle(b *jwtbundle.Bundle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bundle != nil && b != nil && s.bundle.Equal(b) {
		return
	}
	s.bundle = b
	close(s.changed)
	s.changed = make(chan struct{})
}

// Bundle returns the JWT bundle, nil before the server sent one.
func (s *JWTStore) Bundle() *jwtbundle.Bundle {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.bundle
}

// GetJWTBundleForTrustDomain implements jwtbundle.Source.
func (s *JWTStore) GetJWTBundleForTrustDomain(td spiffeid.TrustDomain) (*jwtbundle.Bundle, error) {
	b := s.Bundle()
	if b == nil || b.TrustDomain() != td {
		return nil, fmt.Errorf("cache: no JWT bundle for trust domain %q", td)
	}
	return b, nil
}

// Changed returns a channel closed at the next bundle change.
func (s *JWTStore) Changed() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.changed
}

// AudienceKey returns the canonical form of an audience set: sorted,
// without duplicates, NUL-separated.
func AudienceKey(audience []string) string {
	a := slices.Clone(audience)
	slices.Sort(a)
	return strings.Join(slices.Compact(a), "\x00")
}

// Token returns the cached token for entry e and the audience set, or nil
// when there is none or it is past half its life at now.
func (s *JWTStore) Token(e registration.Entry, audience []string, now time.Time) *JWTSVID {
	k := jwtKey{entryID: e.ID, revision: e.Revision, audience: AudienceKey(audience)}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if t := s.tokens[k]; t != nil && t.fresh(now) {
		return t
	}
	return nil
}

// PutToken caches t for entry e and the audience set.
func (s *JWTStore) PutToken(e registration.Entry, audience []string, t *JWTSVID, now time.Time) {
	k := jwtKey{entryID: e.ID, revision: e.Revision, audience: AudienceKey(audience)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tokens[k]; !ok && len(s.tokens) >= MaxJWTSVIDs {
		for k, old := range s.tokens {
			if !old.fresh(now) {
				delete(s.tokens, k)
			}
		}
		for k := range s.tokens {
			if len(s.tokens) < MaxJWTSVIDs {
				break
			}
			delete(s.tokens, k)
		}
	}
	if t.KeyID == "" {
		t.KeyID = tokenKeyID(t.Token)
	}
	s.tokens[k] = t
}

// DropSignedBy forgets the cached tokens signed by any of keyIDs (keys an
// operator tainted), so the next fetch gets a token from the active key.
// It returns how many it dropped.
func (s *JWTStore) DropSignedBy(keyIDs []string) int {
	if len(keyIDs) == 0 {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, t := range s.tokens {
		if slices.Contains(keyIDs, t.KeyID) {
			delete(s.tokens, k)
			n++
		}
	}
	return n
}

// Tokens returns the number of cached tokens.
func (s *JWTStore) Tokens() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.tokens)
}

// MatchEntries returns the entries whose selectors are all among
// selectors, whether or not an X.509-SVID was minted for them yet.
func (c *Cache) MatchEntries(selectors []registration.Selector) []registration.Entry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []registration.Entry
	c.matchLocked(selectors, func(_ string, e registration.Entry) { out = append(out, e) })
	return out
}
