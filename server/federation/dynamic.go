package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/server/datastore"
)

// Dynamic relationships are those an operator creates over the admin API
// (SPIRE's `federation create|update|delete`). Their definitions live in
// the datastore under DynamicKey, written only by compare-and-swap so that
// servers sharing the database never overwrite each other's changes; each
// server re-reads them every StaticReload. Their bundles are kept like the
// configured relationships' (KVPrefix + trust domain). The relationships
// of the configuration's federation block are read-only here, and win over
// a dynamic one of the same trust domain.
const (
	DynamicKey = "federation/relationships"
	// MaxDynamicRelationships bounds the dynamic relationships (each
	// fetches on its own).
	MaxDynamicRelationships = 1000
)

// Errors of the dynamic relationship operations that callers branch on.
var (
	// ErrConfigured refuses a change of a relationship of the
	// configuration file.
	ErrConfigured = errors.New("configured in the server's federation block, which is read-only at run time: edit the configuration and restart")
	// ErrExists refuses to create a relationship that exists.
	ErrExists = errors.New("a federation relationship with this trust domain already exists (use federation update)")
	// ErrNoStore refuses dynamic relationships without a datastore that
	// can compare-and-swap.
	ErrNoStore = errors.New("dynamic federation relationships need the server's datastore")
	errRemoved = errors.New("the relationship was deleted or replaced meanwhile")
)

// Swapper is the compare-and-swap of server/datastore's KV, which dynamic
// relationships are written with.
type Swapper interface {
	SwapKV(ctx context.Context, key string, old, value []byte) (swapped bool, err error)
}

// dynamicRecord is one stored dynamic relationship.
type dynamicRecord struct {
	TrustDomain string `json:"trust_domain"`
	URL         string `json:"bundle_endpoint_url"`
	Profile     string `json:"bundle_endpoint_profile"`
	EndpointID  string `json:"endpoint_spiffe_id,omitempty"`
	// Owner names who manages the relationship ("k8s_registrar"); empty
	// (records written before the field existed included) is the CLI.
	Owner string `json:"owner,omitempty"`
}

type dynamicDoc struct {
	Relationships []dynamicRecord `json:"relationships"`
}

func recordOf(rel Relationship) dynamicRecord {
	r := dynamicRecord{TrustDomain: rel.TrustDomain.Name(), URL: rel.URL, Profile: string(rel.Profile), Owner: rel.Owner}
	if !rel.EndpointID.IsZero() {
		r.EndpointID = rel.EndpointID.String()
	}
	return r
}

func (r dynamicRecord) relationship() (Relationship, error) {
	td, err := spiffeid.TrustDomainFromString(r.TrustDomain)
	if err != nil {
		return Relationship{}, err
	}
	rel := Relationship{TrustDomain: td, URL: r.URL, Profile: Profile(r.Profile), Owner: r.Owner}
	if r.EndpointID != "" {
		if rel.EndpointID, err = spiffeid.FromString(r.EndpointID); err != nil {
			return Relationship{}, fmt.Errorf("%s: endpoint SPIFFE ID: %w", td.Name(), err)
		}
	}
	return rel, nil
}

func sameDefinition(a, b Relationship) bool {
	return a.TrustDomain == b.TrustDomain && a.URL == b.URL && a.Profile == b.Profile && a.EndpointID == b.EndpointID
}

// readDynamic returns the stored definitions and the bytes they were read
// from (nil when none is stored).
func (f *Fetcher) readDynamic(ctx context.Context) ([]byte, []Relationship, error) {
	if f.cfg.Store == nil {
		return nil, nil, nil
	}
	raw, err := f.cfg.Store.GetKV(ctx, DynamicKey)
	if errors.Is(err, datastore.ErrNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("federation: read dynamic relationships: %w", err)
	}
	var doc dynamicDoc
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, nil, fmt.Errorf("federation: stored dynamic relationships: %w", err)
	}
	rels := make([]Relationship, 0, len(doc.Relationships))
	for _, r := range doc.Relationships {
		rel, err := r.relationship()
		if err != nil {
			return nil, nil, fmt.Errorf("federation: stored dynamic relationships: %w", err)
		}
		rels = append(rels, rel)
	}
	return raw, rels, nil
}

// swapDynamic applies change to the stored definitions by compare-and-swap,
// reading again and retrying when another server changed them meanwhile.
func (f *Fetcher) swapDynamic(ctx context.Context, change func([]Relationship) ([]Relationship, error)) error {
	sw, ok := f.cfg.Store.(Swapper)
	if f.cfg.Store == nil || !ok {
		return ErrNoStore
	}
	for range 5 {
		raw, rels, err := f.readDynamic(ctx)
		if err != nil {
			return err
		}
		next, err := change(rels)
		if err != nil {
			return err
		}
		doc := dynamicDoc{Relationships: make([]dynamicRecord, 0, len(next))}
		for _, rel := range next {
			doc.Relationships = append(doc.Relationships, recordOf(rel))
		}
		data, err := json.Marshal(doc)
		if err != nil {
			return err
		}
		swapped, err := sw.SwapKV(ctx, DynamicKey, raw, data)
		if err != nil {
			return fmt.Errorf("federation: store dynamic relationships: %w", err)
		}
		if swapped {
			return nil
		}
	}
	return errors.New("federation: the dynamic relationships kept changing on another server; try again")
}

// loadDynamic adds the stored dynamic relationships at start-up. One whose
// trust domain the configuration also names is skipped: the file wins.
func (f *Fetcher) loadDynamic(ctx context.Context) error {
	_, rels, err := f.readDynamic(ctx)
	if err != nil {
		return err
	}
	for _, rel := range rels {
		if f.rel(rel.TrustDomain) != nil {
			f.log.Warn("Ignoring a dynamic federation relationship: the configuration's federation block names the same trust domain",
				"trust_domain", rel.TrustDomain.Name())
			continue
		}
		if err := f.addStored(ctx, rel); err != nil {
			return err
		}
	}
	return nil
}

// addStored adds a stored dynamic relationship with its stored bundle.
func (f *Fetcher) addStored(ctx context.Context, rel Relationship) error {
	if err := f.checkRelationship(rel); err != nil {
		return fmt.Errorf("federation: stored dynamic relationship: %w", err)
	}
	b, err := f.storedBundle(ctx, rel.TrustDomain)
	if err != nil {
		return err
	}
	rs := f.newRelState(rel, true)
	f.setBundle(rs, b)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rels = append(f.rels, rs)
	f.startLocked(rs)
	return nil
}

// storedBundle returns the persisted bundle of a relationship, or nil.
func (f *Fetcher) storedBundle(ctx context.Context, td spiffeid.TrustDomain) (*spiffebundle.Bundle, error) {
	if f.cfg.Store == nil {
		return nil, nil
	}
	data, err := f.cfg.Store.GetKV(ctx, KVPrefix+td.Name())
	switch {
	case errors.Is(err, datastore.ErrNotFound) || err == nil && len(data) == 0:
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("federation: %s: read stored bundle: %w", td.Name(), err)
	}
	b, err := ParseBundle(td, data)
	if err != nil {
		return nil, fmt.Errorf("federation: %s: stored bundle: %w", td.Name(), err)
	}
	return b, nil
}

// checkBootstrap checks a bundle given with a dynamic relationship.
func checkBootstrap(td spiffeid.TrustDomain, b *spiffebundle.Bundle) error {
	if b == nil {
		return nil
	}
	if b.TrustDomain() != td {
		return fmt.Errorf("federation: %s: the trust domain bundle is for %q", td.Name(), b.TrustDomain().Name())
	}
	if err := checkAuthorities(td, b.X509Authorities()); err != nil {
		return fmt.Errorf("federation: %s: trust domain bundle: %w", td.Name(), err)
	}
	return nil
}

// CreateRelationship adds a dynamic relationship and starts fetching its
// bundle (once Run runs). b, optional, is trusted until the first fetch
// and authenticates an https_spiffe endpoint; without it a static bundle
// of the trust domain (`bundle set` first, as with SPIRE) becomes the
// relationship's. https_spiffe needs one of them. The definition is
// stored before it takes effect here.
func (f *Fetcher) CreateRelationship(ctx context.Context, rel Relationship, b *spiffebundle.Bundle) (Status, error) {
	td := rel.TrustDomain
	if err := f.checkRelationship(rel); err != nil {
		return Status{}, err
	}
	if err := checkBootstrap(td, b); err != nil {
		return Status{}, err
	}
	f.dynMu.Lock()
	defer f.dynMu.Unlock()
	if rs := f.rel(td); rs != nil {
		if !rs.dynamic {
			return Status{}, fmt.Errorf("federation: %s: %w", td.Name(), ErrConfigured)
		}
		return Status{}, fmt.Errorf("federation: %s: %w", td.Name(), ErrExists)
	}
	f.staticMu.Lock()
	defer f.staticMu.Unlock()
	fromStatic := false
	if b == nil {
		f.mu.Lock()
		if sb, ok := f.static[td]; ok {
			b, fromStatic = sb.bundle.Clone(), true
		}
		f.mu.Unlock()
	}
	if b == nil && rel.Profile == ProfileHTTPSSPIFFE {
		return Status{}, fmt.Errorf("federation: %s: https_spiffe needs the bundle of %q to authenticate its endpoint with: "+
			"give one with the relationship, or set it with bundle set first", td.Name(), td.Name())
	}
	if f.cfg.Store == nil {
		return Status{}, ErrNoStore
	}
	// The bundle first (or clear one a deleted relationship left), then
	// the definition, which other servers act on.
	var err error
	if b != nil {
		err = f.persist(ctx, td, b)
	} else {
		err = f.cfg.Store.PutKV(ctx, KVPrefix+td.Name(), nil)
	}
	if err != nil {
		return Status{}, fmt.Errorf("federation: %s: store bundle: %w", td.Name(), err)
	}
	err = f.swapDynamic(ctx, func(rels []Relationship) ([]Relationship, error) {
		if slices.ContainsFunc(rels, func(r Relationship) bool { return r.TrustDomain == td }) {
			return nil, fmt.Errorf("federation: %s: %w", td.Name(), ErrExists)
		}
		if len(rels) >= MaxDynamicRelationships {
			return nil, fmt.Errorf("federation: at most %d dynamic relationships", MaxDynamicRelationships)
		}
		return append(rels, rel), nil
	})
	if err != nil {
		return Status{}, err
	}
	if fromStatic {
		// The static bundle became the relationship's.
		if err := f.unstoreStatic(ctx, td); err != nil {
			f.log.Warn("Cannot remove the static bundle a relationship took over", "trust_domain", td.Name(), "error", err)
		}
	}
	rs := f.newRelState(rel, true)
	if b != nil {
		f.setBundle(rs, b.Clone())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.static, td)
	f.rels = append(f.rels, rs)
	f.startLocked(rs)
	f.signalLocked()
	f.log.Info("Federation relationship created", "trust_domain", td.Name(), "url", rel.URL, "profile", rel.Profile,
		"bundle", b != nil, "from_static_bundle", fromStatic)
	return rs.status, nil
}

// UpdateRelationship replaces the endpoint of a dynamic relationship, and
// its bundle when b is given; the bundle held is kept otherwise.
func (f *Fetcher) UpdateRelationship(ctx context.Context, rel Relationship, b *spiffebundle.Bundle) (Status, error) {
	td := rel.TrustDomain
	if err := f.checkRelationship(rel); err != nil {
		return Status{}, err
	}
	if err := checkBootstrap(td, b); err != nil {
		return Status{}, err
	}
	f.dynMu.Lock()
	defer f.dynMu.Unlock()
	old, err := f.dynamicRel(td)
	if err != nil {
		return Status{}, err
	}
	f.mu.Lock()
	held := old.bundle
	f.mu.Unlock()
	if b == nil && held == nil && rel.Profile == ProfileHTTPSSPIFFE {
		return Status{}, fmt.Errorf("federation: %s: https_spiffe needs the bundle of %q to authenticate its endpoint with", td.Name(), td.Name())
	}
	err = f.swapDynamic(ctx, func(rels []Relationship) ([]Relationship, error) {
		i := slices.IndexFunc(rels, func(r Relationship) bool { return r.TrustDomain == td })
		if i < 0 {
			return nil, fmt.Errorf("federation: %q: %w", td.Name(), ErrUnknownTrustDomain)
		}
		rels[i] = rel
		return rels, nil
	})
	if err != nil {
		return Status{}, err
	}
	f.retire(old)
	if b != nil {
		if err := f.persist(ctx, td, b); err != nil {
			f.log.Error("Cannot persist federated bundle", "trust_domain", td.Name(), "error", err)
		}
		held = b.Clone()
	}
	st := f.replace(old, rel, held)
	f.log.Info("Federation relationship updated", "trust_domain", td.Name(), "url", rel.URL, "profile", rel.Profile, "bundle_replaced", b != nil)
	return st, nil
}

// DeleteRelationship removes a dynamic relationship: its bundle stops
// being trusted and is no longer kept.
func (f *Fetcher) DeleteRelationship(ctx context.Context, td spiffeid.TrustDomain) error {
	f.dynMu.Lock()
	defer f.dynMu.Unlock()
	rs, err := f.dynamicRel(td)
	if err != nil {
		return err
	}
	err = f.swapDynamic(ctx, func(rels []Relationship) ([]Relationship, error) {
		return slices.DeleteFunc(rels, func(r Relationship) bool { return r.TrustDomain == td }), nil
	})
	if err != nil {
		return err
	}
	f.retire(rs)
	if err := f.cfg.Store.PutKV(ctx, KVPrefix+td.Name(), nil); err != nil {
		f.log.Warn("Cannot clear the bundle of a deleted relationship", "trust_domain", td.Name(), "error", err)
	}
	f.remove(rs)
	f.log.Info("Federation relationship deleted", "trust_domain", td.Name())
	return nil
}

// dynamicRel returns the dynamic relationship of td, or why there is none.
func (f *Fetcher) dynamicRel(td spiffeid.TrustDomain) (*relState, error) {
	rs := f.rel(td)
	switch {
	case rs == nil && f.hasStatic(td):
		return nil, fmt.Errorf("federation: %q has a static bundle (bundle set) but no federation relationship", td.Name())
	case rs == nil:
		return nil, fmt.Errorf("federation: %q: %w", td.Name(), ErrUnknownTrustDomain)
	case !rs.dynamic:
		return nil, fmt.Errorf("federation: %s: %w", td.Name(), ErrConfigured)
	}
	return rs, nil
}

// retire stops the refresh loop of rs and waits for a fetch in flight, so
// that nothing is accepted for it afterwards.
func (f *Fetcher) retire(rs *relState) {
	f.mu.Lock()
	stop := rs.stop
	rs.stop = nil
	f.mu.Unlock()
	if stop != nil {
		stop()
	}
	rs.fetchMu.Lock()
	rs.removed = true
	rs.fetchMu.Unlock()
}

// replace puts a new state for rel, holding b, in the place of old.
func (f *Fetcher) replace(old *relState, rel Relationship, b *spiffebundle.Bundle) Status {
	rs := f.newRelState(rel, true)
	f.setBundle(rs, b)
	f.mu.Lock()
	defer f.mu.Unlock()
	if i := slices.Index(f.rels, old); i >= 0 {
		f.rels[i] = rs
	} else {
		f.rels = append(f.rels, rs)
	}
	f.startLocked(rs)
	f.signalLocked()
	return rs.status
}

// remove drops a retired rs.
func (f *Fetcher) remove(rs *relState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rels = slices.DeleteFunc(f.rels, func(r *relState) bool { return r == rs })
	f.signalLocked()
}

// ReloadDynamic applies the dynamic relationships other servers sharing
// the datastore created, updated or deleted (Run calls it every
// StaticReload; the server also when the datastore announces a write of
// DynamicKey).
func (f *Fetcher) ReloadDynamic(ctx context.Context) error {
	if _, ok := f.cfg.Store.(Swapper); f.cfg.Store == nil || !ok {
		return nil
	}
	f.dynMu.Lock()
	defer f.dynMu.Unlock()
	_, rels, err := f.readDynamic(ctx)
	if err != nil {
		return err
	}
	want := make(map[spiffeid.TrustDomain]Relationship, len(rels))
	for _, rel := range rels {
		want[rel.TrustDomain] = rel
	}
	f.mu.Lock()
	var current []*relState
	for _, rs := range f.rels {
		if rs.dynamic {
			current = append(current, rs)
		}
	}
	f.mu.Unlock()
	for _, rs := range current {
		td := rs.rel.TrustDomain
		rel, ok := want[td]
		delete(want, td)
		switch {
		case !ok:
			f.retire(rs)
			f.remove(rs)
			f.log.Info("Federation relationship deleted by another server", "trust_domain", td.Name())
		case !sameDefinition(rel, rs.rel):
			if err := f.checkRelationship(rel); err != nil {
				f.log.Error("Ignoring an invalid stored federation relationship", "trust_domain", td.Name(), "error", err)
				continue
			}
			f.mu.Lock()
			held := rs.bundle
			f.mu.Unlock()
			f.retire(rs)
			f.replace(rs, rel, held)
			f.log.Info("Federation relationship updated by another server", "trust_domain", td.Name(), "url", rel.URL)
		}
	}
	for _, rel := range rels {
		if _, ok := want[rel.TrustDomain]; !ok || f.rel(rel.TrustDomain) != nil {
			continue // present, or configured in the file
		}
		if err := f.addStored(ctx, rel); err != nil {
			f.log.Error("Ignoring a stored federation relationship", "trust_domain", rel.TrustDomain.Name(), "error", err)
			continue
		}
		f.log.Info("Federation relationship created by another server", "trust_domain", rel.TrustDomain.Name(), "url", rel.URL)
	}
	return nil
}

// DynamicRelationships returns the stored dynamic relationships (with
// their Owner), as the datastore holds them now.
func (f *Fetcher) DynamicRelationships(ctx context.Context) ([]Relationship, error) {
	if f.cfg.Store == nil {
		return nil, ErrNoStore
	}
	_, rels, err := f.readDynamic(ctx)
	return rels, err
}
