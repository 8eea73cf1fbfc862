package nodeapi

import (
	"maps"
	"slices"
	"sync"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/internal/x509util"
)

// FederationSource is the set of federated bundles the server trusts;
// *federation.Fetcher satisfies it. Bundles maps a trust domain to its
// bundle, an empty bundle meaning revoked; Changed returns a channel closed
// at the next change.
type FederationSource interface {
	Bundles() map[spiffeid.TrustDomain]*spiffebundle.Bundle
	Changed() <-chan struct{}
}

// fedSnapshot is the federated set in wire form, shared by every stream
// until the source changes.
type fedSnapshot struct {
	changed <-chan struct{} // closed when the snapshot is stale
	bundles map[string]*apiv1.FederatedBundle
}

// fedCache memoizes the wire form of the federated bundles.
type fedCache struct {
	mu   sync.Mutex // guards snap
	snap *fedSnapshot
}

// federated returns the federated bundles to send, by trust domain name,
// and a channel closed at their next change. Without a source both are
// nil (the set is empty and never changes). The map is shared: callers
// must not modify it.
func (s *Server) federated() (map[string]*apiv1.FederatedBundle, <-chan struct{}) {
	if s.cfg.Federation == nil {
		return nil, nil
	}
	s.fed.mu.Lock()
	defer s.fed.mu.Unlock()
	if snap := s.fed.snap; snap != nil {
		select {
		case <-snap.changed:
		default:
			return snap.bundles, snap.changed
		}
	}
	// Changed before Bundles: a change in between closes ch and the next
	// call rebuilds.
	ch := s.cfg.Federation.Changed()
	src := s.cfg.Federation.Bundles()
	out := make(map[string]*apiv1.FederatedBundle, len(src))
	for td, b := range src {
		if td == s.cfg.TrustDomain || td.IsZero() || b == nil {
			continue // never our own trust domain as a federated one
		}
		out[td.Name()] = s.federatedProto(td, b)
	}
	s.fed.snap = &fedSnapshot{changed: ch, bundles: out}
	return out, ch
}

// federatedProto converts b; an empty (revoked) bundle has no authorities
// and no keys, which agents read as "drop it".
func (s *Server) federatedProto(td spiffeid.TrustDomain, b *spiffebundle.Bundle) *apiv1.FederatedBundle {
	p := &apiv1.FederatedBundle{TrustDomain: td.Name(), X509Authorities: x509util.DERs(b.X509Authorities())}
	if seq, ok := b.SequenceNumber(); ok {
		p.SequenceNumber = int64(seq) //nolint:gosec // sequence numbers fit in int64 in practice; only informative
	}
	p.JwtKeys = s.jwtKeysProto(b.JWTAuthorities(), "federated_trust_domain", td.Name())
	return p
}

// allFederated returns every bundle of set ordered by trust domain.
func allFederated(set map[string]*apiv1.FederatedBundle) []*apiv1.FederatedBundle {
	out := make([]*apiv1.FederatedBundle, 0, len(set))
	for _, td := range slices.Sorted(maps.Keys(set)) {
		out = append(out, set[td])
	}
	return out
}

// changedFederated returns what a stream that last sent sent must send to
// hold now: bundles that differ, and an empty bundle for each trust domain
// gone from now.
func changedFederated(sent, now map[string]*apiv1.FederatedBundle) []*apiv1.FederatedBundle {
	var out []*apiv1.FederatedBundle
	for _, td := range slices.Sorted(maps.Keys(now)) {
		if old, ok := sent[td]; !ok || (old != now[td] && !proto.Equal(old, now[td])) {
			out = append(out, now[td])
		}
	}
	for _, td := range slices.Sorted(maps.Keys(sent)) {
		if _, ok := now[td]; !ok {
			out = append(out, &apiv1.FederatedBundle{TrustDomain: td})
		}
	}
	return out
}
