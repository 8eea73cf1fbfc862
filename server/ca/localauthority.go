package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/hallmarkid/hallmark/internal/rotation"
)

// Statuses of an authority in AuthorityInfo.
const (
	StatusActive   = "active"   // signs SVIDs
	StatusPrepared = "prepared" // published in the bundle, not yet signing
	StatusOld      = "old"      // formerly active (or superseded), kept until it expires
)

// Errors of the operator actions; callers branch on them with errors.Is
// (the admin API maps them to NotFound and FailedPrecondition).
var (
	// ErrUnknownAuthority: no authority has the given ID.
	ErrUnknownAuthority = errors.New("no such authority")
	// ErrRefused: the action makes no sense for the authority's status.
	ErrRefused = errors.New("refused")
)

// AuthorityInfo describes one authority the CA holds.
type AuthorityInfo struct {
	// ID is the first 16 hex digits of the SHA-256 of the certificate.
	ID string
	// Status is StatusActive, StatusPrepared or StatusOld.
	Status string
	// Tainted reports that an operator marked it compromised: everything
	// it signed must be re-minted under another authority.
	Tainted bool
	// Certificate is the authority's CA certificate (a root, or the
	// server's intermediate under an upstream CA); it must not be modified.
	Certificate *x509.Certificate
	// Intermediate reports that it was issued by the upstream CA.
	Intermediate bool
	// PublishedAt is when this server first published (or held) it;
	// ActivatedAt when it first signed, zero if it never did.
	PublishedAt, ActivatedAt time.Time
}

func infoOf(a *authority, status string) AuthorityInfo {
	return AuthorityInfo{ID: a.id, Status: status, Tainted: a.tainted, Certificate: a.cert, Intermediate: !a.root,
		PublishedAt: a.publishedAt, ActivatedAt: a.activatedAt}
}

// Authorities returns every authority the CA holds: the active one, the
// prepared one if any, then old ones, newest first.
func (ca *CA) Authorities() []AuthorityInfo {
	s := ca.cur.Load()
	out := []AuthorityInfo{infoOf(s.active, StatusActive)}
	if s.next != nil {
		out = append(out, infoOf(s.next, StatusPrepared))
	}
	for _, a := range s.old {
		out = append(out, infoOf(a, StatusOld))
	}
	return out
}

// TaintedAuthorities returns the certificates of the unexpired authorities
// an operator tainted: an agent must re-mint every SVID whose chain leads
// to one of them. They stay in Bundle until revoked or expired.
func (ca *CA) TaintedAuthorities() []*x509.Certificate {
	s := ca.cur.Load()
	now := ca.clock()
	var out []*x509.Certificate
	for _, a := range s.all() {
		if a.tainted && !a.expired(now) {
			out = append(out, a.cert)
		}
	}
	return out
}

// roles is the authority set an operator action builds.
type roles struct {
	active, next *authority
	old          []*authority
	revoked      map[string]time.Time
}

// change applies an operator action: like Rotate it first adopts the
// shared state (so the action applies to what the servers agreed on),
// then persists (and shares) the result before publishing it.
//
// When another server changes the shared state first, the action is
// applied again to what it wrote.
func (ca *CA) change(ctx context.Context, f func(cur *snapshot, now time.Time) (roles, error)) error {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return ca.retrySwap(func() error { return ca.changeOnce(ctx, f) })
}

// changeOnce is one round of change. The caller holds mu.
func (ca *CA) changeOnce(ctx context.Context, f func(cur *snapshot, now time.Time) (roles, error)) error {
	now := ca.clock()
	if ca.shared != nil {
		if err := ca.syncShared(ctx, now); err != nil {
			return err
		}
	}
	cur := ca.cur.Load()
	r, err := f(cur, now)
	if err != nil {
		return err
	}
	s := ca.build(cur.version+1, r.active, r.next, r.old, cur.seq, cur.digest, now)
	s.revoked = rotation.LiveRevoked(r.revoked, now)
	if err := ca.persist(ctx, s); err != nil {
		return err
	}
	ca.publish(s)
	return nil
}

// PrepareAuthority prepares the next authority now, as rotation does at
// half the active lifetime, and publishes it in Bundle at once. A
// prepared authority that was waiting (it never signed) is replaced.
func (ca *CA) PrepareAuthority(ctx context.Context) (AuthorityInfo, error) {
	var prepared, replaced *authority
	err := ca.change(ctx, func(cur *snapshot, now time.Time) (roles, error) {
		if !ca.canPrepare(cur.active) {
			return roles{}, fmt.Errorf("ca: prepare authority: %w: the upstream CA certificate expires at %s, no later than the active intermediate; replace the upstream CA first",
				ErrRefused, ca.up.cert.NotAfter.UTC().Format(time.RFC3339))
		}
		n, err := mint(ca.td, ca.keyType, ca.ttl, ca.up, now)
		if err != nil {
			return roles{}, fmt.Errorf("ca: prepare authority: %w", err)
		}
		prepared, replaced = n, cur.next
		return roles{active: cur.active, next: n, old: liveOld(cur.old, now), revoked: cur.revoked}, nil
	})
	if err != nil {
		return AuthorityInfo{}, err
	}
	if replaced != nil {
		ca.log.Warn("prepared CA authority replaced by an operator; it never signed", "replaced", replaced.id, "id", prepared.id)
	}
	ca.log.Info("prepared next CA authority at an operator's request; published in the bundle", "id", prepared.id,
		"not_after", prepared.cert.NotAfter, "intermediate", !prepared.root, "bundle_sequence", ca.BundleSequence())
	return infoOf(prepared, StatusPrepared), nil
}

// ActivateAuthority makes the prepared authority id the one that signs,
// now; the formerly active one becomes old and stays in Bundle until it
// expires. Agents and workloads that have not yet received the prepared
// authority (see PublishedAt) will reject what it signs until they do.
func (ca *CA) ActivateAuthority(ctx context.Context, id string) (AuthorityInfo, error) {
	var activated, previous *authority
	err := ca.change(ctx, func(cur *snapshot, now time.Time) (roles, error) {
		a, status, err := lookup(cur, id, "activate")
		if err != nil {
			if errors.Is(err, ErrUnknownAuthority) && cur.next == nil {
				return roles{}, fmt.Errorf("%w (and none is prepared: run prepare first)", err)
			}
			return roles{}, err
		}
		switch {
		case status == StatusActive:
			return roles{}, fmt.Errorf("ca: activate authority %s: %w: it is already the active authority", id, ErrRefused)
		case status == StatusOld:
			return roles{}, fmt.Errorf("ca: activate authority %s: %w: it is an old authority; only the prepared one can be activated", id, ErrRefused)
		case a.expired(now):
			return roles{}, fmt.Errorf("ca: activate authority %s: %w: it expired at %s", id, ErrRefused, a.cert.NotAfter.UTC().Format(time.RFC3339))
		}
		previous = cur.active
		activated = a.withTimes(a.publishedAt, now)
		old := append([]*authority{cur.active}, liveOld(cur.old, now)...)
		return roles{active: activated, old: old, revoked: cur.revoked}, nil
	})
	if err != nil {
		return AuthorityInfo{}, err
	}
	ca.log.Info("activated CA authority at an operator's request", "id", activated.id, "previous", previous.id,
		"published_for", activated.activatedAt.Sub(activated.publishedAt).Round(time.Millisecond), "not_after", activated.cert.NotAfter)
	return infoOf(activated, StatusActive), nil
}

// TaintAuthority marks the old authority id as compromised. It stays in
// Bundle, so what it signed keeps verifying until re-minted, but the
// bundle counts as changed (BundleChanged, BundleSequence) and
// TaintedAuthorities lists it, so that agents re-mint every SVID under
// it. Only an old authority can be tainted: activate a successor first.
func (ca *CA) TaintAuthority(ctx context.Context, id string) (AuthorityInfo, error) {
	var tainted *authority
	err := ca.change(ctx, func(cur *snapshot, now time.Time) (roles, error) {
		a, status, err := lookup(cur, id, "taint")
		if err != nil {
			return roles{}, err
		}
		switch {
		case status == StatusActive:
			return roles{}, fmt.Errorf("ca: taint authority %s: %w: it is the active authority; prepare and activate a successor first", id, ErrRefused)
		case status == StatusPrepared:
			return roles{}, fmt.Errorf("ca: taint authority %s: %w: it is prepared and has signed nothing; prepare another to replace it", id, ErrRefused)
		case a.tainted:
			return roles{}, fmt.Errorf("ca: taint authority %s: %w: it is already tainted", id, ErrRefused)
		case a.expired(now):
			return roles{}, fmt.Errorf("ca: taint authority %s: %w: it expired at %s", id, ErrRefused, a.cert.NotAfter.UTC().Format(time.RFC3339))
		}
		c := *a
		c.tainted = true
		tainted = &c
		old := liveOld(cur.old, now)
		for i, o := range old {
			if o.id == id {
				old[i] = tainted
			}
		}
		return roles{active: cur.active, next: cur.next, old: old, revoked: cur.revoked}, nil
	})
	if err != nil {
		return AuthorityInfo{}, err
	}
	ca.log.Warn("CA authority tainted by an operator; agents must re-mint what it signed", "id", tainted.id,
		"not_after", tainted.cert.NotAfter, "bundle_sequence", ca.BundleSequence())
	return infoOf(tainted, StatusOld), nil
}

// RevokeAuthority removes the tainted old authority id from the CA and
// from Bundle: whatever it signed stops verifying. It is remembered (in
// the shared state too) until it expires, so no server merges it back.
// With an upstream CA it is refused: the bundle is the upstream's roots,
// which keep anchoring the intermediate.
func (ca *CA) RevokeAuthority(ctx context.Context, id string) (AuthorityInfo, error) {
	var revoked *authority
	err := ca.change(ctx, func(cur *snapshot, now time.Time) (roles, error) {
		if _, ok := cur.revoked[id]; ok {
			return roles{}, fmt.Errorf("ca: revoke authority %s: %w: it is already revoked", id, ErrRefused)
		}
		a, status, err := lookup(cur, id, "revoke")
		if err != nil {
			return roles{}, err
		}
		switch {
		case status == StatusActive:
			return roles{}, fmt.Errorf("ca: revoke authority %s: %w: it is the active authority; prepare and activate a successor, then taint it first", id, ErrRefused)
		case status == StatusPrepared:
			return roles{}, fmt.Errorf("ca: revoke authority %s: %w: it is prepared, not tainted; prepare another to replace it", id, ErrRefused)
		case !a.tainted:
			return roles{}, fmt.Errorf("ca: revoke authority %s: %w: it is not tainted; taint it first and revoke it once agents have re-minted their SVIDs", id, ErrRefused)
		case ca.up != nil:
			return roles{}, fmt.Errorf("ca: revoke authority %s: %w: it is an intermediate of the upstream CA, whose roots form the bundle and keep trusting it; revoke it at the upstream CA", id, ErrRefused)
		}
		revoked = a
		var old []*authority
		for _, o := range liveOld(cur.old, now) {
			if o.id != id {
				old = append(old, o)
			}
		}
		rv := maps.Clone(cur.revoked)
		if rv == nil {
			rv = map[string]time.Time{}
		}
		rv[id] = a.cert.NotAfter
		return roles{active: cur.active, next: cur.next, old: old, revoked: rv}, nil
	})
	if err != nil {
		return AuthorityInfo{}, err
	}
	ca.log.Warn("CA authority revoked by an operator; removed from the bundle", "id", revoked.id,
		"bundle_sequence", ca.BundleSequence())
	return infoOf(revoked, StatusOld), nil
}

// lookup finds id in s and names its status, or returns an error wrapping
// ErrUnknownAuthority.
func lookup(s *snapshot, id, verb string) (*authority, string, error) {
	switch {
	case id == "":
		return nil, "", fmt.Errorf("ca: %s authority: %w: an authority ID is required", verb, ErrUnknownAuthority)
	case s.active.id == id:
		return s.active, StatusActive, nil
	case s.next != nil && s.next.id == id:
		return s.next, StatusPrepared, nil
	}
	if i := slices.IndexFunc(s.old, func(a *authority) bool { return a.id == id }); i >= 0 {
		return s.old[i], StatusOld, nil
	}
	return nil, "", fmt.Errorf("ca: %s authority %s: %w", verb, id, ErrUnknownAuthority)
}

// liveOld returns a copy of old without the expired authorities.
func liveOld(old []*authority, now time.Time) []*authority {
	var out []*authority
	for _, a := range old {
		if !a.expired(now) {
			out = append(out, a)
		}
	}
	return out
}

// validAuthorityID reports whether id has the form of an authority ID:
// 16 lowercase hex digits.
func validAuthorityID(id string) bool {
	if len(id) != 16 {
		return false
	}
	for _, c := range id {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
