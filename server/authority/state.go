package authority

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// stateFormat is the version of the persisted JSON layout.
const stateFormat = 1

// Persisted roles of an entry.
const (
	docActive = "active"
	docNext   = "next"
	docOld    = "old"
)

// EntryHead is the first field of an entry in a state document.
type EntryHead struct {
	Status string `json:"status"`
}

// EntryTail is the last fields of an entry in a state document.
type EntryTail struct {
	PublishedAt time.Time `json:"published_at"`
	ActivatedAt time.Time `json:"activated_at,omitzero"`
	Tainted     bool      `json:"tainted,omitempty"`
}

// docOut is the state document as written; the fields a layout does not
// use stay empty and are omitted.
type docOut[D any] struct {
	Format         int          `json:"format"`
	TrustDomain    string       `json:"trust_domain"`
	Version        uint64       `json:"version"`
	BundleSequence *uint64      `json:"bundle_sequence,omitempty"`
	BundleDigest   *string      `json:"bundle_digest,omitempty"`
	Authorities    []D          `json:"authorities,omitempty"`
	Keys           []D          `json:"keys,omitempty"`
	Revoked        []revokedDoc `json:"revoked,omitempty"`
}

// revokedDoc lists an entry an operator removed, until it expires, so
// that no server merges it back.
type revokedDoc struct {
	ID       string    `json:"id,omitempty"`
	KeyID    string    `json:"key_id,omitempty"`
	NotAfter time.Time `json:"not_after"`
}

// docIn is the state document as read: the fields of the layout are
// parsed once it is known.
type docIn struct {
	Format         int             `json:"format"`
	TrustDomain    string          `json:"trust_domain"`
	Version        uint64          `json:"version"`
	BundleSequence json.RawMessage `json:"bundle_sequence"`
	BundleDigest   json.RawMessage `json:"bundle_digest"`
	Authorities    json.RawMessage `json:"authorities"`
	Keys           json.RawMessage `json:"keys"`
	Revoked        json.RawMessage `json:"revoked"`
}

// encode serialises s.
func (g *Engine[K, D, P]) encode(s *Snapshot[K, P]) ([]byte, error) {
	doc := docOut[D]{Format: stateFormat, TrustDomain: g.cfg.TrustDomain.Name(), Version: s.version}
	var entries []D
	add := func(e *Entry[K], status string) error {
		d, err := g.kind.EncodeEntry(e.Key, EntryHead{Status: status},
			EntryTail{PublishedAt: e.PublishedAt.UTC(), ActivatedAt: e.ActivatedAt.UTC(), Tainted: e.Tainted})
		if err != nil {
			return fmt.Errorf("%s: %w", g.spec.Prefix, err)
		}
		entries = append(entries, d)
		return nil
	}
	if err := add(s.active, docActive); err != nil {
		return nil, err
	}
	if s.next != nil {
		if err := add(s.next, docNext); err != nil {
			return nil, err
		}
	}
	for _, e := range s.old {
		if err := add(e, docOld); err != nil {
			return nil, err
		}
	}
	for _, id := range slices.Sorted(maps.Keys(s.revoked)) {
		r := revokedDoc{NotAfter: s.revoked[id].UTC()}
		if g.spec.Layout == LayoutAuthorities {
			r.ID = id
		} else {
			r.KeyID = id
		}
		doc.Revoked = append(doc.Revoked, r)
	}
	if g.spec.Layout == LayoutAuthorities {
		doc.BundleSequence, doc.BundleDigest, doc.Authorities = &s.seq, &s.digest, entries
	} else {
		doc.Keys = entries
	}
	return json.MarshalIndent(doc, "", "  ")
}

// decoded is a parsed, validated state document.
type decoded[K Key] struct {
	version, seq uint64
	digest       string
	entries      []decodedEntry[K]
	revoked      map[string]time.Time
}

// decodedEntry is one entry and its persisted role (docActive, docNext,
// docOld).
type decodedEntry[K Key] struct {
	e       *Entry[K]
	status  string
	foreign bool
}

// parsed is the document's fields of the configured layout.
type parsed[D any] struct {
	seq    uint64
	digest string
	heads  []struct {
		EntryHead
		EntryTail
	}
	entries []D
	revoked []revokedDoc
}

// parse reads the layout-specific fields of doc.
func (g *Engine[K, D, P]) parse(doc *docIn) (*parsed[D], error) {
	p := &parsed[D]{}
	raw := doc.Keys
	if g.spec.Layout == LayoutAuthorities {
		raw = doc.Authorities
		if err := unmarshalPresent(doc.BundleSequence, &p.seq); err != nil {
			return nil, err
		}
		if err := unmarshalPresent(doc.BundleDigest, &p.digest); err != nil {
			return nil, err
		}
	}
	if err := unmarshalPresent(raw, &p.heads); err != nil {
		return nil, err
	}
	if err := unmarshalPresent(raw, &p.entries); err != nil {
		return nil, err
	}
	if err := unmarshalPresent(doc.Revoked, &p.revoked); err != nil {
		return nil, err
	}
	return p, nil
}

func unmarshalPresent(raw json.RawMessage, v any) error {
	if len(raw) == 0 {
		return nil
	}
	return json.Unmarshal(raw, v)
}

// decode parses an untrusted state document. Every entry must decode, the
// trust domain must be the configured one, and there must be exactly one
// active entry and at most one next.
func (g *Engine[K, D, P]) decode(data []byte) (*decoded[K], error) {
	sp := g.spec
	if len(data) > sp.MaxStateSize {
		return nil, fmt.Errorf("state is %d bytes, more than %d", len(data), sp.MaxStateSize)
	}
	var doc docIn
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("malformed state: %w", err)
	}
	p, err := g.parse(&doc)
	if err != nil {
		return nil, fmt.Errorf("malformed state: %w", err)
	}
	if doc.Format != stateFormat {
		return nil, fmt.Errorf("state format %d is not supported (want %d)", doc.Format, stateFormat)
	}
	if td := g.cfg.TrustDomain.Name(); doc.TrustDomain != td {
		return nil, fmt.Errorf("state is for trust domain %q, but the configured trust domain is %q", doc.TrustDomain, td)
	}
	if len(p.entries) == 0 || len(p.entries) > sp.MaxEntries {
		return nil, fmt.Errorf("state holds %d %s, want 1 to %d", len(p.entries), sp.Plural, sp.MaxEntries)
	}
	if len(p.revoked) > sp.MaxRevoked {
		return nil, fmt.Errorf("state lists %d revoked %s, at most %d", len(p.revoked), sp.Plural, sp.MaxRevoked)
	}
	ds := &decoded[K]{version: doc.Version, seq: p.seq, digest: p.digest}
	for i, r := range p.revoked {
		id := r.KeyID
		if sp.Layout == LayoutAuthorities {
			id = r.ID
		}
		if !sp.ValidID(id) {
			return nil, fmt.Errorf("revoked %d: malformed %s ID %q", i, sp.Noun, id)
		}
		if _, dup := ds.revoked[id]; dup {
			return nil, fmt.Errorf("revoked %d: %s appears twice", i, id)
		}
		if ds.revoked == nil {
			ds.revoked = map[string]time.Time{}
		}
		ds.revoked[id] = r.NotAfter
	}
	seen := map[string]bool{}
	var active, next int
	for i, d := range p.entries {
		h := p.heads[i]
		switch h.Status {
		case docActive:
			active++
		case docNext:
			next++
		case docOld:
		default:
			return nil, fmt.Errorf("%s %d: unknown status %q", sp.Noun, i, h.Status)
		}
		k, foreign, err := g.kind.DecodeEntry(i, d)
		if err != nil {
			return nil, err
		}
		id := k.ID()
		if seen[id] {
			return nil, fmt.Errorf("%s %d: %s appears twice", sp.Noun, i, id)
		}
		if _, ok := ds.revoked[id]; ok {
			return nil, fmt.Errorf("%s %d: %s is both held and revoked", sp.Noun, i, id)
		}
		if h.Tainted && h.Status != docOld {
			return nil, fmt.Errorf("%s %d: %s is tainted but %s; only old %s can be", sp.Noun, i, id, h.Status, sp.Plural)
		}
		seen[id] = true
		e := &Entry[K]{Key: k, PublishedAt: h.PublishedAt, ActivatedAt: h.ActivatedAt, Tainted: h.Tainted}
		ds.entries = append(ds.entries, decodedEntry[K]{e: e, status: h.Status, foreign: foreign})
	}
	if active != 1 {
		return nil, fmt.Errorf("state has %d active %s, want 1", active, sp.Plural)
	}
	if next > 1 {
		return nil, fmt.Errorf("state has %d next %s, want at most 1", next, sp.Plural)
	}
	return ds, nil
}

// DecodeState parses an untrusted state document of kind for trust domain
// td (the local file or the shared KV value) and returns the number of
// entries it holds. It does no I/O; it is for fuzzing and diagnostics.
func DecodeState[K Key, D, P any](spec *Spec, kind Kind[K, D, P], td spiffeid.TrustDomain, data []byte) (int, error) {
	g := &Engine[K, D, P]{spec: spec, kind: kind, cfg: Config{TrustDomain: td}}
	ds, err := g.decode(data)
	if err != nil {
		return 0, err
	}
	return len(ds.entries), nil
}
