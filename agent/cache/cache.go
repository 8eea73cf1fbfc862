// Package cache holds the agent's view of what it may hand out: the
// registration entries the server pushed, the SVIDs minted for them, the
// trust bundle and the federated trust domains' bundles. Readers match a caller's selectors against it and are told
// of every change so they can push updates.
//
// It must not import the Workload API, SDS or server packages.
package cache

import (
	"crypto/x509"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/registration"
)

// SVID is a workload X.509-SVID minted by the agent. It holds only the
// serialised forms that serving needs (an agent keeps thousands): parse
// them with [SVID.Chain] where the parsed form is wanted.
type SVID struct {
	ID        spiffeid.ID
	CertsDER  []byte // leaf first, concatenated DER, as the Workload API sends it
	KeyDER    []byte // PKCS#8
	ExpiresAt time.Time
	IssuedAt  time.Time
	// EntryRevision is the entry revision the SVID was minted for.
	EntryRevision int64
	// IssuerKeyID is the leaf's authority key ID: the authority that
	// signed it, re-minted at once if an operator taints that authority.
	IssuerKeyID string
}

// Chain parses the certificate chain, leaf first.
func (s *SVID) Chain() ([]*x509.Certificate, error) {
	certs, err := x509.ParseCertificates(s.CertsDER)
	if err != nil {
		return nil, fmt.Errorf("cache: SVID %s: %w", s.ID, err)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("cache: SVID %s: empty chain", s.ID)
	}
	return certs, nil
}

// Identity is an entry with its current SVID.
type Identity struct {
	Entry registration.Entry
	SVID  *SVID
}

// Bundle is a trust domain's X.509 authorities (and, for federated trust
// domains, its JWT authorities). A Bundle is never modified once stored:
// replace it.
type Bundle struct {
	TrustDomain spiffeid.TrustDomain
	Certs       []*x509.Certificate
	DER         []byte // concatenated
	// JWT holds a federated trust domain's JWT authorities; nil when it
	// publishes none, and always nil for the own trust domain (whose keys
	// live in the JWTStore).
	JWT *jwtbundle.Bundle
}

// Cache is safe for concurrent use.
type Cache struct {
	mu      sync.RWMutex // guards the fields that follow
	entries map[string]registration.Entry
	svids   map[string]*SVID
	index   map[registration.Selector]map[string]struct{}
	bundle  *Bundle
	// federated holds other trust domains' bundles, never the own one.
	federated map[spiffeid.TrustDomain]*Bundle
	// tainted holds the key IDs of authorities an operator tainted.
	tainted map[string]struct{}
	changed chan struct{}
	gen     uint64
	// staged is set when StageSVIDs stored SVIDs not yet broadcast.
	staged bool
}

// New returns an empty cache.
func New() *Cache {
	return &Cache{
		entries: make(map[string]registration.Entry),
		svids:   make(map[string]*SVID),
		index:   make(map[registration.Selector]map[string]struct{}),
		changed: make(chan struct{}),
	}
}

// Changed returns a channel closed at the next change and the generation
// the caller is about to read.
func (c *Cache) Changed() (<-chan struct{}, uint64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.changed, c.gen
}

func (c *Cache) broadcastLocked() {
	c.staged = false
	c.gen++
	close(c.changed)
	c.changed = make(chan struct{})
}

// UpdateEntries applies a sync message. With full set, entries not in
// upserts are dropped. SVIDs of dropped entries are dropped too.
func (c *Cache) UpdateEntries(full bool, upserts []registration.Entry, deleted []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if full {
		keep := make(map[string]bool, len(upserts))
		for _, e := range upserts {
			keep[e.ID] = true
		}
		for id := range c.entries {
			if !keep[id] {
				c.removeLocked(id)
			}
		}
	}
	for _, id := range deleted {
		c.removeLocked(id)
	}
	for _, e := range upserts {
		if old, ok := c.entries[e.ID]; ok {
			if old.Revision == e.Revision && !full {
				continue
			}
			c.unindexLocked(old)
			if old.SPIFFEID != e.SPIFFEID {
				// Its SVID names the old SPIFFE ID: never hand it to the
				// workloads the updated entry now matches.
				delete(c.svids, e.ID)
			}
		}
		c.entries[e.ID] = e
		for _, s := range e.Selectors {
			m := c.index[s]
			if m == nil {
				m = make(map[string]struct{})
				c.index[s] = m
			}
			m[e.ID] = struct{}{}
		}
	}
	c.broadcastLocked()
}

func (c *Cache) removeLocked(id string) {
	e, ok := c.entries[id]
	if !ok {
		return
	}
	c.unindexLocked(e)
	delete(c.entries, id)
	delete(c.svids, id)
}

func (c *Cache) unindexLocked(e registration.Entry) {
	for _, s := range e.Selectors {
		if m := c.index[s]; m != nil {
			delete(m, e.ID)
			if len(m) == 0 {
				delete(c.index, s)
			}
		}
	}
}

// SetSVIDs stores freshly minted SVIDs, keyed by entry ID, and tells
// readers. SVIDs for entries no longer present are ignored.
func (c *Cache) SetSVIDs(svids map[string]*SVID) {
	if len(svids) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.storeLocked(svids)
	c.broadcastLocked()
}

// StageSVIDs stores freshly minted SVIDs like SetSVIDs, but tells the
// readers waiting on Changed only at the next Publish: a batch of 1,000
// SVIDs minted in 32 signing calls then reaches a watcher as one update
// rather than as 32 ever larger ones (each parsed whole by the client).
// Readers that look meanwhile (a new call) see them at once.
func (c *Cache) StageSVIDs(svids map[string]*SVID) {
	if len(svids) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.storeLocked(svids)
	c.staged = true
}

// Publish tells readers of the SVIDs staged since the last Publish, if
// any.
func (c *Cache) Publish() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.staged {
		c.broadcastLocked()
	}
}

func (c *Cache) storeLocked(svids map[string]*SVID) {
	for id, s := range svids {
		// Minted for an entry since deleted, or renamed while it was being
		// signed: not this entry's identity any more.
		if e, ok := c.entries[id]; ok && e.SPIFFEID == s.ID {
			c.svids[id] = s
		}
	}
}

// SetBundle replaces the trust bundle.
func (c *Cache) SetBundle(b *Bundle) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bundle = b
	c.broadcastLocked()
}

// Bundle returns the current trust bundle (nil before the first sync).
func (c *Cache) Bundle() *Bundle {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.bundle
}

// Match returns the identities whose entry selectors are all among
// selectors, and whether any matching entry still lacks an SVID.
func (c *Cache) Match(selectors []registration.Selector) (ids []Identity, pending bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	c.matchLocked(selectors, func(id string, e registration.Entry) {
		svid := c.svids[id]
		if svid == nil {
			pending = true
			return
		}
		ids = append(ids, Identity{Entry: e, SVID: svid})
	})
	return ids, pending
}

// smallSelectorSet is the most caller selectors matched by scanning
// rather than through a set: a unix caller has a handful, and a map per
// Workload API call cost more than the scans.
const smallSelectorSet = 16

// matchLocked calls fn once for each entry whose selectors are all among
// selectors.
func (c *Cache) matchLocked(selectors []registration.Selector, fn func(id string, e registration.Entry)) {
	var set registration.SelectorSet
	if len(selectors) > smallSelectorSet {
		set = registration.NewSelectorSet(selectors...)
	}
	includes := func(ss []registration.Selector) bool {
		if set != nil {
			return set.Includes(ss)
		}
		for _, s := range ss {
			if !slices.Contains(selectors, s) {
				return false
			}
		}
		return true
	}
	// An entry is listed under each of its selectors: deduplicate only
	// when more than one of the caller's selectors lists entries.
	buckets := 0
	for _, s := range selectors {
		if len(c.index[s]) > 0 {
			buckets++
		}
	}
	var seen map[string]struct{}
	if buckets > 1 {
		seen = make(map[string]struct{})
	}
	for _, s := range selectors {
		for id := range c.index[s] {
			if seen != nil {
				if _, dup := seen[id]; dup {
					continue
				}
				seen[id] = struct{}{}
			}
			if e := c.entries[id]; includes(e.Selectors) {
				fn(id, e)
			}
		}
	}
}

// Due returns entries without an SVID, with an SVID past half its life at
// now, or whose entry changed since the SVID was minted. Entries without
// an SVID come first, so new registrations are not queued behind a
// rotation of many SVIDs.
func (c *Cache) Due(now time.Time) []registration.Entry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var missing, stale []registration.Entry
	for id, e := range c.entries {
		s := c.svids[id]
		switch {
		case s == nil:
			missing = append(missing, e)
		case s.EntryRevision != e.Revision || !now.Before(halfLife(s)) || c.taintedLocked(s):
			stale = append(stale, e)
		}
	}
	return append(missing, stale...)
}

// SetTainted replaces the set of tainted authorities (their subject key
// IDs) and returns how many cached SVIDs one of them signed: Due reports
// those at once, so they are re-minted under the active authority.
func (c *Cache) SetTainted(keyIDs [][]byte) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tainted = make(map[string]struct{}, len(keyIDs))
	for _, k := range keyIDs {
		c.tainted[string(k)] = struct{}{}
	}
	n := 0
	for _, s := range c.svids {
		if c.taintedLocked(s) {
			n++
		}
	}
	return n
}

// TaintedKeyIDs returns the tainted authorities' subject key IDs.
func (c *Cache) TaintedKeyIDs() [][]byte {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([][]byte, 0, len(c.tainted))
	for k := range c.tainted {
		out = append(out, []byte(k))
	}
	return out
}

func (c *Cache) taintedLocked(s *SVID) bool {
	if len(c.tainted) == 0 || s.IssuerKeyID == "" {
		return false
	}
	_, ok := c.tainted[s.IssuerKeyID]
	return ok
}

// NextRotation returns the earliest half-life of the cached SVIDs, or the
// zero time when there are none.
func (c *Cache) NextRotation() time.Time {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var next time.Time
	for _, s := range c.svids {
		h := halfLife(s)
		if next.IsZero() || h.Before(next) {
			next = h
		}
	}
	return next
}

func halfLife(s *SVID) time.Time {
	return s.IssuedAt.Add(s.ExpiresAt.Sub(s.IssuedAt) / 2)
}

// Stats returns the number of entries and SVIDs.
func (c *Cache) Stats() (entries, svids int) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries), len(c.svids)
}

// DropExpired removes SVIDs that expired at now, so they are never served.
func (c *Cache) DropExpired(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for id, s := range c.svids {
		if !now.Before(s.ExpiresAt) {
			delete(c.svids, id)
			n++
		}
	}
	if n > 0 {
		c.broadcastLocked()
	}
}
