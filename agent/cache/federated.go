package cache

import (
	"bytes"
	"maps"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/registration"
)

// Empty reports whether b has neither X.509 nor JWT authorities: for a
// federated trust domain, that it was removed or revoked.
func (b *Bundle) Empty() bool {
	return len(b.Certs) == 0 && (b.JWT == nil || len(b.JWT.JWTAuthorities()) == 0)
}

// sameAuthorities reports whether a and b hold the same authorities.
func sameAuthorities(a, b *Bundle) bool {
	if a.TrustDomain != b.TrustDomain || !bytes.Equal(a.DER, b.DER) || (a.JWT == nil) != (b.JWT == nil) {
		return false
	}
	return a.JWT == nil || a.JWT.Equal(b.JWT)
}

// SetFederatedBundles applies federated bundles pushed by the server. With
// complete, bundles is the whole federated set and every other federated
// bundle is dropped; otherwise bundles lists only changes. An empty bundle
// (see Bundle.Empty) drops its trust domain. A bundle for the own trust
// domain (that of SetBundle) is ignored: federation never replaces it.
// Watchers are told only when something changed.
func (c *Cache) SetFederatedBundles(complete bool, bundles []*Bundle) {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := make(map[spiffeid.TrustDomain]*Bundle, len(c.federated)+len(bundles))
	if !complete {
		maps.Copy(next, c.federated)
	}
	for _, b := range bundles {
		if b == nil || b.TrustDomain.IsZero() || (c.bundle != nil && b.TrustDomain == c.bundle.TrustDomain) {
			continue
		}
		if b.Empty() {
			delete(next, b.TrustDomain)
			continue
		}
		if old := c.federated[b.TrustDomain]; old != nil && sameAuthorities(old, b) {
			b = old // keep the stored object: readers compare by identity first
		}
		next[b.TrustDomain] = b
	}
	if len(next) == len(c.federated) && maps.EqualFunc(next, c.federated, func(x, y *Bundle) bool { return x == y }) {
		return
	}
	c.federated = next
	c.broadcastLocked()
}

// FederatedBundle returns the bundle of the federated trust domain td, or
// nil when the agent holds none.
func (c *Cache) FederatedBundle(td spiffeid.TrustDomain) *Bundle {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.federated[td]
}

// FederatedBundles returns every federated bundle, ordered by trust domain
// name.
func (c *Cache) FederatedBundles() []*Bundle {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]*Bundle, 0, len(c.federated))
	for _, b := range c.federated {
		out = append(out, b)
	}
	sortBundles(out)
	return out
}

// HasFederatedBundles reports whether the agent holds any federated
// bundle, so readers can skip working out a caller's trust domains.
func (c *Cache) HasFederatedBundles() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.federated) > 0
}

// FederatedFor returns the bundles of the trust domains that entries
// federate with (registration.Entry.FederatesWith), each once, ordered by
// trust domain name. Trust domains the agent holds no bundle for are left
// out. This is what a workload holding SVIDs for entries may trust beyond
// its own trust domain.
func (c *Cache) FederatedFor(entries []registration.Entry) []*Bundle {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if len(c.federated) == 0 {
		return nil
	}
	var out []*Bundle
	for _, e := range entries {
		for _, td := range e.FederatesWith {
			if b := c.federated[td]; b != nil && !slices.Contains(out, b) {
				out = append(out, b)
			}
		}
	}
	sortBundles(out)
	return out
}

func sortBundles(bs []*Bundle) {
	slices.SortFunc(bs, func(a, b *Bundle) int { return strings.Compare(a.TrustDomain.Name(), b.TrustDomain.Name()) })
}

// EntryIDs returns the IDs of the entries held, in no particular order:
// what a reconnecting agent tells the server it holds.
func (c *Cache) EntryIDs() []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return slices.Collect(maps.Keys(c.entries))
}
