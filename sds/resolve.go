package sds

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hallmarkid/hallmark/agent/cache"
	"github.com/hallmarkid/hallmark/agent/workloadattest"
	"github.com/hallmarkid/hallmark/registration"
)

// callerInfo is an attested caller.
type callerInfo = workloadattest.Caller

// resKind is the kind of a resolved secret.
type resKind int

const (
	resCert       resKind = iota + 1 // TlsCertificate
	resValidation                    // CertificateValidationContext
)

// resource is one named secret as the caller would get it now. It holds
// references into the cache (immutable SVIDs and bundles) or file bytes,
// never a built proto, so that comparing what a stream would get with what
// it last sent is cheap and streams stay small.
type resource struct {
	name string
	kind resKind

	svid *cache.SVID // resCert from the cache
	// certPEM and keyPEM are a resCert from files.
	certPEM, keyPEM []byte

	bundles []*cache.Bundle // resValidation from the cache, by trust domain
	rootPEM []byte          // resValidation from a file-root file
	// spiffe sends bundles as the SPIFFE certificate validator rather than
	// trusted_ca.
	spiffe bool
}

// equal reports whether a and b would produce the same secret.
func (a *resource) equal(b *resource) bool {
	if a.name != b.name || a.kind != b.kind || a.spiffe != b.spiffe ||
		!bytes.Equal(a.certPEM, b.certPEM) || !bytes.Equal(a.keyPEM, b.keyPEM) || !bytes.Equal(a.rootPEM, b.rootPEM) {
		return false
	}
	if (a.svid == nil) != (b.svid == nil) {
		return false
	}
	if a.svid != nil && a.svid != b.svid &&
		(!bytes.Equal(a.svid.CertsDER, b.svid.CertsDER) || !bytes.Equal(a.svid.KeyDER, b.svid.KeyDER)) {
		return false
	}
	if len(a.bundles) != len(b.bundles) {
		return false
	}
	for i := range a.bundles {
		x, y := a.bundles[i], b.bundles[i]
		if x != y && (x.TrustDomain != y.TrustDomain || !bytes.Equal(x.DER, y.DER)) {
			return false
		}
	}
	return true
}

// version is a content hash of the secret, the per-resource version of the
// incremental protocol: equal resources have equal versions across streams
// and agent restarts, so a reconnecting client is not sent what it has.
func (a *resource) version() string {
	h := sha256.New()
	field := func(b []byte) {
		var n [8]byte
		l := uint64(len(b))
		for i := range n {
			n[i] = byte(l >> (8 * i))
		}
		h.Write(n[:])
		h.Write(b)
	}
	field([]byte{byte(a.kind), boolByte(a.spiffe)})
	field([]byte(a.name))
	if a.svid != nil {
		field(a.svid.CertsDER)
		field(a.svid.KeyDER)
	}
	field(a.certPEM)
	field(a.keyPEM)
	field(a.rootPEM)
	for _, b := range a.bundles {
		field([]byte(b.TrustDomain.Name()))
		field(b.DER)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// view is what the cache holds for one caller at one moment.
type view struct {
	ids     []cache.Identity // unexpired, sorted as the Workload API sorts them
	pending bool             // a matching entry has no usable SVID yet
	bundle  *cache.Bundle
	// federated holds the bundles of the trust domains the caller's
	// entries federate with, by trust domain name.
	federated []*cache.Bundle
}

// federatedBundle returns the caller's federated bundle of td, or nil.
func (v *view) federatedBundle(td spiffeid.TrustDomain) *cache.Bundle {
	for _, b := range v.federated {
		if b.TrustDomain == td {
			return b
		}
	}
	return nil
}

func (v *view) entitled() bool { return len(v.ids) > 0 || v.pending }

func (h *Handler) view(c callerInfo) view {
	ids, pending := h.cfg.Cache.Match(c.Selectors)
	now := h.cfg.Clock()
	live := ids[:0]
	for _, id := range ids {
		if now.Before(id.SVID.ExpiresAt) {
			live = append(live, id)
		} else {
			pending = true // the agent is about to mint a new one
		}
	}
	sort.Slice(live, func(i, j int) bool {
		if a, b := live[i].Entry.SPIFFEID.String(), live[j].Entry.SPIFFEID.String(); a != b {
			return a < b
		}
		return live[i].Entry.ID < live[j].Entry.ID
	})
	v := view{ids: live, pending: pending, bundle: h.cfg.Cache.Bundle()}
	// The federated trust domains are those of every matching entry, with
	// or without an SVID yet; the identities found are all of them unless
	// something is pending.
	if !h.cfg.Cache.HasFederatedBundles() {
		return v
	}
	var entries []registration.Entry
	if pending {
		entries = h.cfg.Cache.MatchEntries(c.Selectors)
	} else {
		entries = make([]registration.Entry, len(ids))
		for i, id := range ids {
			entries[i] = id.Entry
		}
	}
	v.federated = h.cfg.Cache.FederatedFor(entries)
	return v
}

// errNotEntitled is the answer for any SVID name the caller may not have,
// whether or not another workload holds it: no oracle.
func errNotEntitled(name string) error {
	return status.Errorf(codes.PermissionDenied, "sds: caller is not entitled to %q", truncate(name))
}

var errNoIdentity = status.Error(codes.PermissionDenied, "sds: no identity issued to this caller")

// resolve returns the secrets refs name (with wildcard, everything the
// caller may have) as they are now, in refs order. pending means something
// is not available yet and the caller should wait for a cache change. prev
// holds what was last sent: a file that cannot be read mid-stream keeps
// its last content rather than failing the stream.
func (h *Handler) resolve(c callerInfo, refs []ref, wildcard, spiffe bool, prev map[string]*resource) (out []*resource, pending bool, err error) {
	v := h.view(c)
	if wildcard {
		if !v.entitled() {
			return nil, false, errNoIdentity
		}
		if len(v.ids) == 0 || v.bundle == nil {
			return nil, true, nil
		}
		seen := make(map[spiffeid.ID]bool, len(v.ids))
		for _, id := range v.ids {
			if !seen[id.SVID.ID] {
				seen[id.SVID.ID] = true
				out = append(out, &resource{name: id.SVID.ID.String(), kind: resCert, svid: id.SVID})
			}
		}
		out = append(out, &resource{name: v.bundle.TrustDomain.IDString(), kind: resValidation,
			bundles: []*cache.Bundle{v.bundle}, spiffe: spiffe})
		for _, b := range v.federated {
			out = append(out, &resource{name: b.TrustDomain.IDString(), kind: resValidation,
				bundles: []*cache.Bundle{b}, spiffe: spiffe})
		}
	}
	for _, r := range refs {
		res, p, err := h.resolveOne(c, &v, r, spiffe, prev)
		if err != nil {
			return nil, false, err
		}
		if p {
			pending = true
			continue
		}
		out = append(out, res)
	}
	if pending {
		return nil, true, nil
	}
	return out, false, nil
}

func (h *Handler) resolveOne(c callerInfo, v *view, r ref, spiffe bool, prev map[string]*resource) (*resource, bool, error) {
	switch r.kind {
	case refDefaultSVID:
		switch {
		case len(v.ids) > 0:
			return &resource{name: r.name, kind: resCert, svid: v.ids[0].SVID}, false, nil
		case v.pending:
			return nil, true, nil
		}
		return nil, false, errNoIdentity
	case refSVID:
		for _, id := range v.ids {
			if id.SVID.ID == r.id {
				return &resource{name: r.name, kind: resCert, svid: id.SVID}, false, nil
			}
		}
		if v.pending {
			return nil, true, nil
		}
		return nil, false, errNotEntitled(r.name)
	case refOwnBundle, refAllBundles, refBundle:
		// Bundles are served to every attested caller, with or without an
		// identity, as SPIRE does: the own trust bundle is public (the
		// bundle endpoint and `bundle show` publish it), and a caller
		// without entries federates with nobody, so ALL is the own bundle
		// alone and a foreign trust domain is NotFound.
		if v.bundle == nil {
			return nil, true, nil
		}
		bundles := []*cache.Bundle{v.bundle}
		switch {
		case r.kind == refAllBundles:
			bundles = append(bundles, v.federated...)
		case r.kind == refBundle && r.td != v.bundle.TrustDomain:
			// Only trust domains the caller's entries federate with.
			b := v.federatedBundle(r.td)
			if b == nil {
				return nil, false, status.Errorf(codes.NotFound, "sds: no bundle for trust domain %q", r.td.Name())
			}
			bundles = []*cache.Bundle{b}
		}
		if !spiffe && len(bundles) > 1 {
			return nil, false, status.Errorf(codes.FailedPrecondition,
				"sds: %q holds several trust domains and needs the SPIFFE certificate validator (Envoy >= 1.18); "+
					"as trusted_ca one domain's CA could vouch for another's IDs", r.name)
		}
		return &resource{name: r.name, kind: resValidation, bundles: bundles, spiffe: spiffe}, false, nil
	case refFileRoot, refFileCert:
		res, err := h.readFileResource(c, r)
		if err != nil {
			if p := prev[r.name]; p != nil {
				h.cfg.Log.Warn("SDS file secret unreadable; keeping the last one sent", "name", r.name, "error", err,
					"pid", c.PID, "uid", c.UID)
				return p, false, nil
			}
			return nil, false, err
		}
		return res, false, nil
	}
	return nil, false, status.Errorf(codes.Internal, "sds: unhandled resource name %q", r.name)
}

// deadline tracks the bounded wait for pending identities.
type deadline struct {
	since time.Time
}

// left returns how long the caller may still wait, starting the wait at
// its first call; stop resets it.
func (d *deadline) left(now time.Time, limit time.Duration) time.Duration {
	if d.since.IsZero() {
		d.since = now
	}
	return limit - now.Sub(d.since)
}

func (d *deadline) stop() { d.since = time.Time{} }
