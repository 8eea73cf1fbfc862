package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/server/datastore"
)

// Datastore KV keys of static bundles: the bundles an operator set for
// trust domains without a relationship (`bundle set`). They are kept apart
// from KVPrefix so that a later federates_with block for the same trust
// domain never starts from a bundle an operator deleted.
const (
	StaticKVPrefix = "federation/static/"
	// StaticIndexKey holds the JSON array of the static trust domains' names.
	StaticIndexKey = "federation/static-trust-domains"
)

// ErrUnknownTrustDomain is returned for a trust domain that has neither a
// relationship nor a static bundle.
var ErrUnknownTrustDomain = errors.New("no federates_with relationship or static bundle")

type staticBundle struct {
	bundle *spiffebundle.Bundle
	setAt  time.Time // zero when loaded from the store
}

// loadStatic reads the static bundles from the store. A name that also has
// a relationship is skipped: the configuration wins.
func (f *Fetcher) loadStatic(ctx context.Context) error {
	bs, err := f.readStatic(ctx)
	if err != nil {
		return err
	}
	for td, b := range bs {
		f.static[td] = staticBundle{bundle: b}
		f.log.Info("Loaded static federated bundle", "trust_domain", td.Name(), "x509_authorities", len(b.X509Authorities()))
	}
	return nil
}

// readStatic reads the static bundles the store holds.
func (f *Fetcher) readStatic(ctx context.Context) (map[spiffeid.TrustDomain]*spiffebundle.Bundle, error) {
	out := map[spiffeid.TrustDomain]*spiffebundle.Bundle{}
	if f.cfg.Store == nil {
		return out, nil
	}
	names, err := f.staticIndex(ctx)
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		td, err := spiffeid.TrustDomainFromString(name)
		if err != nil {
			return nil, fmt.Errorf("federation: static bundle index: %w", err)
		}
		if f.rel(td) != nil {
			f.log.Debug("Ignoring the static bundle of a trust domain configured with federates_with", "trust_domain", name)
			continue
		}
		if td == f.cfg.TrustDomain {
			f.log.Warn("Ignoring a static bundle of our own trust domain", "trust_domain", name)
			continue
		}
		data, err := f.cfg.Store.GetKV(ctx, StaticKVPrefix+name)
		if err != nil {
			return nil, fmt.Errorf("federation: %s: read static bundle: %w", name, err)
		}
		b, err := ParseBundle(td, data)
		if err != nil {
			return nil, fmt.Errorf("federation: %s: stored static bundle: %w", name, err)
		}
		out[td] = b
	}
	return out, nil
}

// ReloadStatic re-reads the static bundles from the store and applies what
// changed there, so that a `bundle set` or `bundle delete` made on another
// server sharing the database reaches this one (Run calls it every
// StaticReload; the server also when the datastore announces a write of
// the static bundles). It signals Changed only if something changed.
func (f *Fetcher) ReloadStatic(ctx context.Context) error {
	if f.cfg.Store == nil {
		return nil
	}
	f.staticMu.Lock()
	defer f.staticMu.Unlock()
	bs, err := f.readStatic(ctx)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	changed := len(bs) != len(f.static)
	next := make(map[spiffeid.TrustDomain]staticBundle, len(bs))
	for td, b := range bs {
		if cur, ok := f.static[td]; ok && sameKeys(cur.bundle, b) {
			next[td] = cur
			continue
		}
		changed = true
		next[td] = staticBundle{bundle: b, setAt: time.Now()}
		f.log.Info("Static federated bundle changed by another server", "trust_domain", td.Name(),
			"x509_authorities", len(b.X509Authorities()))
	}
	if changed {
		for td := range f.static {
			if _, ok := next[td]; !ok {
				f.log.Info("Static federated bundle deleted by another server", "trust_domain", td.Name())
			}
		}
		f.static = next
		f.signalLocked()
	}
	return nil
}

// staticIndex returns the stored names of static trust domains.
func (f *Fetcher) staticIndex(ctx context.Context) ([]string, error) {
	if f.cfg.Store == nil {
		return nil, nil
	}
	data, err := f.cfg.Store.GetKV(ctx, StaticIndexKey)
	if errors.Is(err, datastore.ErrNotFound) || err == nil && len(data) == 0 {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("federation: read static bundle index: %w", err)
	}
	var names []string
	if err := json.Unmarshal(data, &names); err != nil {
		return nil, fmt.Errorf("federation: static bundle index: %w", err)
	}
	return names, nil
}

func (f *Fetcher) putStaticIndex(ctx context.Context, names []string) error {
	slices.Sort(names)
	data, err := json.Marshal(slices.Compact(names))
	if err != nil {
		return err
	}
	return f.cfg.Store.PutKV(ctx, StaticIndexKey, data)
}

func (f *Fetcher) hasStatic(td spiffeid.TrustDomain) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.static[td]
	return ok
}

// setStatic stores b as the static bundle of its trust domain: the bundle
// first, then the index, then memory.
func (f *Fetcher) setStatic(ctx context.Context, b *spiffebundle.Bundle) error {
	td := b.TrustDomain()
	if td.IsZero() {
		return errors.New("federation: set bundle: no trust domain")
	}
	if err := checkAuthorities(td, b.X509Authorities()); err != nil {
		return fmt.Errorf("federation: set bundle: %w", err)
	}
	b = b.Clone()
	f.staticMu.Lock()
	defer f.staticMu.Unlock()
	if f.cfg.Store != nil {
		data, err := MarshalBundle(b)
		if err != nil {
			return fmt.Errorf("federation: set bundle: %w", err)
		}
		if err := f.cfg.Store.PutKV(ctx, StaticKVPrefix+td.Name(), data); err != nil {
			return fmt.Errorf("federation: set bundle: %w", err)
		}
		names, err := f.staticIndex(ctx)
		if err != nil {
			return fmt.Errorf("federation: set bundle: %w", err)
		}
		if !slices.Contains(names, td.Name()) {
			if err := f.putStaticIndex(ctx, append(names, td.Name())); err != nil {
				return fmt.Errorf("federation: set bundle: %w", err)
			}
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	prev, had := f.static[td]
	f.static[td] = staticBundle{bundle: b, setAt: time.Now()}
	f.log.Info("Static federated bundle set", "trust_domain", td.Name(), "x509_authorities", len(b.X509Authorities()),
		"jwt_authorities", len(b.JWTAuthorities()))
	if !had || !sameKeys(prev.bundle, b) {
		f.signalLocked()
	}
	return nil
}

// DeleteBundle removes the static bundle of td, which stops being trusted.
// A trust domain configured with federates_with cannot be deleted here:
// remove its block from the configuration, or set an empty bundle to
// revoke it. An unknown trust domain gives ErrUnknownTrustDomain.
func (f *Fetcher) DeleteBundle(ctx context.Context, td spiffeid.TrustDomain) error {
	if f.rel(td) != nil {
		return fmt.Errorf("federation: delete bundle: %q is configured with federates_with; remove the block from the configuration, or set an empty bundle to revoke it", td.Name())
	}
	f.staticMu.Lock()
	defer f.staticMu.Unlock()
	if !f.hasStatic(td) {
		return fmt.Errorf("federation: delete bundle: %q: %w", td.Name(), ErrUnknownTrustDomain)
	}
	if err := f.unstoreStatic(ctx, td); err != nil {
		return fmt.Errorf("federation: delete bundle: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.static, td)
	f.log.Info("Static federated bundle deleted", "trust_domain", td.Name())
	f.signalLocked()
	return nil
}

// unstoreStatic removes td from the stored static bundles; f.staticMu
// must be held.
func (f *Fetcher) unstoreStatic(ctx context.Context, td spiffeid.TrustDomain) error {
	if f.cfg.Store == nil {
		return nil
	}
	names, err := f.staticIndex(ctx)
	if err != nil {
		return err
	}
	names = slices.DeleteFunc(names, func(n string) bool { return n == td.Name() })
	if err := f.putStaticIndex(ctx, names); err != nil {
		return err
	}
	// The index decides; clearing the bundle itself is tidiness.
	if err := f.cfg.Store.PutKV(ctx, StaticKVPrefix+td.Name(), nil); err != nil {
		f.log.Warn("Cannot clear a deleted static bundle", "trust_domain", td.Name(), "error", err)
	}
	return nil
}

// staticStatusLocked describes the static bundles, by name; f.mu must be
// held.
func (f *Fetcher) staticStatusLocked() []Status {
	out := make([]Status, 0, len(f.static))
	for td, sb := range f.static {
		b := sb.bundle
		st := Status{TrustDomain: td, Static: true, HasBundle: true, Revoked: b.Empty(),
			X509Authorities: len(b.X509Authorities()), LastSuccess: sb.setAt}
		st.Sequence, st.HasSequence = b.SequenceNumber()
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b Status) int {
		switch {
		case a.TrustDomain.Name() < b.TrustDomain.Name():
			return -1
		case a.TrustDomain.Name() > b.TrustDomain.Name():
			return 1
		}
		return 0
	})
	return out
}
