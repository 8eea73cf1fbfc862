package federation

import (
	"context"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// SetBundle replaces the bundle of a configured trust domain whatever its
// sequence number: the operator's override, e.g. to bootstrap again after
// a revocation. For a trust domain without a relationship it sets a static
// bundle (see DeleteBundle). Either is persisted. Our own trust domain is
// refused.
func (f *Fetcher) SetBundle(ctx context.Context, b *spiffebundle.Bundle) error {
	if b.TrustDomain() == f.cfg.TrustDomain {
		return fmt.Errorf("federation: set bundle: %q is our own trust domain", b.TrustDomain().Name())
	}
	rs := f.rel(b.TrustDomain())
	if rs == nil {
		return f.setStatic(ctx, b)
	}
	if err := checkAuthorities(rs.rel.TrustDomain, b.X509Authorities()); err != nil {
		return fmt.Errorf("federation: set bundle: %w", err)
	}
	rs.fetchMu.Lock()
	defer rs.fetchMu.Unlock()
	if rs.removed {
		return fmt.Errorf("federation: set bundle: %w", errRemoved)
	}
	b = b.Clone()
	if err := f.persist(ctx, rs.rel.TrustDomain, b); err != nil {
		return fmt.Errorf("federation: set bundle: %w", err)
	}
	f.setBundle(rs, b)
	return nil
}

// Changed returns a channel that is closed at the next change of any
// federated bundle's keys; call it again after each close.
func (f *Fetcher) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

// Bundles returns a copy of every federated bundle held, by trust domain.
// A revoked trust domain maps to an empty bundle; one never fetched and
// without a bootstrap bundle is absent. Static bundles are included. Our
// own trust domain never appears.
func (f *Fetcher) Bundles() map[spiffeid.TrustDomain]*spiffebundle.Bundle {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[spiffeid.TrustDomain]*spiffebundle.Bundle, len(f.rels))
	for _, rs := range f.rels {
		if rs.bundle != nil {
			out[rs.rel.TrustDomain] = rs.bundle.Clone()
		}
	}
	for td, sb := range f.static {
		out[td] = sb.bundle.Clone()
	}
	return out
}

// X509Bundles is Bundles reduced to X.509 authorities, as delivered to
// agents and workloads.
func (f *Fetcher) X509Bundles() map[spiffeid.TrustDomain]*x509bundle.Bundle {
	out := map[spiffeid.TrustDomain]*x509bundle.Bundle{}
	for td, b := range f.Bundles() {
		out[td] = b.X509Bundle()
	}
	return out
}

// Status returns the state of every relationship, in configuration order,
// then of every static bundle, by trust domain name.
func (f *Fetcher) Status() []Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Status, len(f.rels), len(f.rels)+len(f.static))
	for i, rs := range f.rels {
		out[i] = rs.status
	}
	return append(out, f.staticStatusLocked()...)
}

// current returns the bundle of td held now, for endpoint authentication.
func (f *Fetcher) current(rs *relState) *spiffebundle.Bundle {
	f.mu.Lock()
	defer f.mu.Unlock()
	return rs.bundle
}
