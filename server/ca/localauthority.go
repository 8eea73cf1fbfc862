package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"time"

	"github.com/hallmarkid/hallmark/server/authority"
)

// Statuses of an authority in AuthorityInfo.
const (
	StatusActive   = authority.StatusActive   // signs SVIDs
	StatusPrepared = authority.StatusPrepared // published in the bundle, not yet signing
	StatusOld      = authority.StatusOld      // formerly active (or superseded), kept until it expires
)

// Errors of the operator actions; callers branch on them with errors.Is
// (the admin API maps them to NotFound and FailedPrecondition).
var (
	// ErrUnknownAuthority: no authority has the given ID.
	ErrUnknownAuthority = errors.New("no such authority")
	// ErrRefused: the action makes no sense for the authority's status.
	ErrRefused = authority.ErrRefused
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

func infoOf(e *entry, status string) AuthorityInfo {
	return AuthorityInfo{ID: e.ID(), Status: status, Tainted: e.Tainted, Certificate: e.Key.cert, Intermediate: !e.Key.root,
		PublishedAt: e.PublishedAt, ActivatedAt: e.ActivatedAt}
}

// Authorities returns every authority the CA holds: the active one, the
// prepared one if any, then old ones, newest first.
func (ca *CA) Authorities() []AuthorityInfo {
	var out []AuthorityInfo
	for _, l := range ca.eng.Current().List() {
		out = append(out, infoOf(l.Entry, l.Status))
	}
	return out
}

// TaintedAuthorities returns the certificates of the unexpired authorities
// an operator tainted: an agent must re-mint every SVID whose chain leads
// to one of them. They stay in Bundle until revoked or expired.
func (ca *CA) TaintedAuthorities() []*x509.Certificate {
	now := ca.clock()
	var out []*x509.Certificate
	for _, e := range ca.eng.Current().All() {
		if e.Tainted && !e.Expired(now) {
			out = append(out, e.Key.cert)
		}
	}
	return out
}

// PrepareAuthority prepares the next authority now, as rotation does at
// half the active lifetime, and publishes it in Bundle at once. A
// prepared authority that was waiting (it never signed) is replaced.
func (ca *CA) PrepareAuthority(ctx context.Context) (AuthorityInfo, error) {
	e, err := ca.eng.Prepare(ctx)
	return infoOr(e, StatusPrepared, err)
}

// ActivateAuthority makes the prepared authority id the one that signs,
// now; the formerly active one becomes old and stays in Bundle until it
// expires. Agents and workloads that have not yet received the prepared
// authority (see PublishedAt) will reject what it signs until they do.
func (ca *CA) ActivateAuthority(ctx context.Context, id string) (AuthorityInfo, error) {
	e, err := ca.eng.Activate(ctx, id)
	return infoOr(e, StatusActive, err)
}

// TaintAuthority marks the old authority id as compromised. It stays in
// Bundle, so what it signed keeps verifying until re-minted, but the
// bundle counts as changed (BundleChanged, BundleSequence) and
// TaintedAuthorities lists it, so that agents re-mint every SVID under
// it. Only an old authority can be tainted: activate a successor first.
func (ca *CA) TaintAuthority(ctx context.Context, id string) (AuthorityInfo, error) {
	e, err := ca.eng.Taint(ctx, id)
	return infoOr(e, StatusOld, err)
}

// RevokeAuthority removes the tainted old authority id from the CA and
// from Bundle: whatever it signed stops verifying. It is remembered (in
// the shared state too) until it expires, so no server merges it back.
// With an upstream CA it is refused: the bundle is the upstream's roots,
// which keep anchoring the intermediate.
func (ca *CA) RevokeAuthority(ctx context.Context, id string) (AuthorityInfo, error) {
	e, err := ca.eng.Revoke(ctx, id)
	return infoOr(e, StatusOld, err)
}

// infoOr describes the outcome of an action, with the status it leaves
// the authority in.
func infoOr(e *entry, status string, err error) (AuthorityInfo, error) {
	if err != nil {
		return AuthorityInfo{}, err
	}
	return infoOf(e, status), nil
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
