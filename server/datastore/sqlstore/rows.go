package sqlstore

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/registration"
)

// EntryColumns are the columns of an entry as scanEntry reads them.
const EntryColumns = `id, spiffe_id, parent_id, selectors, x509_svid_ttl, jwt_svid_ttl,
	dns_names, federates_with, admin, downstream, hint, revision, created_at`

// EntryRow is an entry in its stored form, as InsertEntries writes it.
// Selectors, DNSNames and FederatesWith hold a JSON string or a []string,
// as the dialect stores them.
type EntryRow struct {
	ID, SPIFFEID, ParentID  string
	Selectors               any
	SelectorsKey            []byte // SHA-256 of registration.SelectorsKey
	X509TTL, JWTTTL         int64
	DNSNames, FederatesWith any
	Admin, Downstream       bool
	Hint                    string
}

// UniqueKey is the row's (spiffe_id, parent_id, selectors_key) as one
// string; the separators cannot occur in SPIFFE IDs.
func (r *EntryRow) UniqueKey() string {
	return r.SPIFFEID + "\x00" + r.ParentID + "\x00" + string(r.SelectorsKey)
}

// toRow checks the parts of e the store relies on and encodes it. Policy
// (trust domain, counts, DNS syntax) is the registration layer's job.
func (d *Dialect) toRow(e *registration.Entry) (EntryRow, error) {
	if e.SPIFFEID.IsZero() {
		return EntryRow{}, errors.New("SPIFFE ID is empty")
	}
	if e.ParentID.IsZero() {
		return EntryRow{}, errors.New("parent ID is empty")
	}
	if err := checkEntryID(e.ID); err != nil {
		return EntryRow{}, err
	}
	for _, s := range e.Selectors {
		if err := s.Validate(); err != nil {
			return EntryRow{}, err
		}
		if err := d.checkText("selector", s.Value); err != nil {
			return EntryRow{}, err
		}
	}
	if e.X509SVIDTTL < 0 || e.JWTSVIDTTL < 0 {
		return EntryRow{}, errors.New("negative TTL")
	}
	if err := d.checkText("hint", e.Hint); err != nil {
		return EntryRow{}, err
	}
	for _, s := range e.DNSNames {
		if err := d.checkText("DNS name", s); err != nil {
			return EntryRow{}, fmt.Errorf("DNS names: %w", err)
		}
	}
	federates := make([]string, len(e.FederatesWith))
	for i, td := range e.FederatesWith {
		if td.IsZero() {
			return EntryRow{}, errors.New("federated trust domain is empty")
		}
		federates[i] = td.Name()
	}
	r := EntryRow{
		ID:           e.ID,
		SPIFFEID:     e.SPIFFEID.String(),
		ParentID:     e.ParentID.String(),
		SelectorsKey: selectorsKeyHash(e.Selectors),
		X509TTL:      int64(e.X509SVIDTTL),
		JWTTTL:       int64(e.JWTSVIDTTL),
		Admin:        e.Admin,
		Downstream:   e.Downstream,
		Hint:         e.Hint,
	}
	if d.TextArrays {
		r.Selectors = EncodeEntrySelectors(e.Selectors)
		r.DNSNames = append([]string{}, e.DNSNames...) // never nil: nil is SQL NULL
		r.FederatesWith = federates
		return r, nil
	}
	var err error
	if r.Selectors, err = encodeJSONSelectors(e.Selectors); err != nil {
		return EntryRow{}, err
	}
	if r.DNSNames, err = encodeJSONStrings(e.DNSNames); err != nil {
		return EntryRow{}, fmt.Errorf("DNS names: %w", err)
	}
	if r.FederatesWith, err = encodeJSONStrings(federates); err != nil {
		return EntryRow{}, err
	}
	return r, nil
}

// scanned holds the scan destinations of one entry row, in one allocation.
type scanned struct {
	id, spiffeID, parentID, hint string
	x509TTL, jwtTTL, rev, nanos  int64
	admin, downstream            bool
	json                         [3]string   // selectors, DNS names, trust domains as JSON
	arr                          [3][]string // the same as text arrays
}

func (d *Dialect) listDest(r *scanned, i int) any {
	if d.TextArrays {
		return &r.arr[i]
	}
	return &r.json[i]
}

func (d *Dialect) strings(r *scanned, i int) ([]string, error) {
	if d.TextArrays {
		if len(r.arr[i]) == 0 {
			return nil, nil
		}
		return r.arr[i], nil
	}
	return decodeJSONStrings(r.json[i])
}

// scanEntry reads one row of EntryColumns.
func (d *Dialect) scanEntry(row Row) (registration.Entry, error) {
	r := new(scanned)
	if err := row.Scan(&r.id, &r.spiffeID, &r.parentID, d.listDest(r, 0), &r.x509TTL, &r.jwtTTL,
		d.listDest(r, 1), d.listDest(r, 2), &r.admin, &r.downstream, &r.hint, &r.rev, &r.nanos); err != nil {
		return registration.Entry{}, err
	}
	e := registration.Entry{
		ID:          r.id,
		X509SVIDTTL: time.Duration(r.x509TTL),
		JWTSVIDTTL:  time.Duration(r.jwtTTL),
		Admin:       r.admin,
		Downstream:  r.downstream,
		Hint:        r.hint,
		Revision:    r.rev,
		CreatedAt:   DecodeTime(r.nanos),
	}
	var err error
	if e.SPIFFEID, err = spiffeid.FromString(r.spiffeID); err != nil {
		return registration.Entry{}, fmt.Errorf("entry %q: SPIFFE ID: %w", r.id, err)
	}
	if e.ParentID, err = spiffeid.FromString(r.parentID); err != nil {
		return registration.Entry{}, fmt.Errorf("entry %q: parent ID: %w", r.id, err)
	}
	if d.TextArrays {
		e.Selectors, err = DecodeEntrySelectors(r.arr[0])
	} else {
		e.Selectors, err = decodeJSONSelectors(r.json[0])
	}
	if err != nil {
		return registration.Entry{}, fmt.Errorf("entry %q: %w", r.id, err)
	}
	if e.DNSNames, err = d.strings(r, 1); err != nil {
		return registration.Entry{}, fmt.Errorf("entry %q: DNS names: %w", r.id, err)
	}
	federates, err := d.strings(r, 2)
	if err != nil {
		return registration.Entry{}, fmt.Errorf("entry %q: %w", r.id, err)
	}
	if len(federates) > 0 {
		e.FederatesWith = make([]spiffeid.TrustDomain, len(federates))
		for i, name := range federates {
			if e.FederatesWith[i], err = spiffeid.TrustDomainFromString(name); err != nil {
				return registration.Entry{}, fmt.Errorf("entry %q: trust domain %q: %w", r.id, name, err)
			}
		}
	}
	return e, nil
}

// cloneEntry copies e so results do not alias the caller's slices.
func cloneEntry(e registration.Entry) registration.Entry {
	e.Selectors = slices.Clone(e.Selectors)
	e.DNSNames = slices.Clone(e.DNSNames)
	e.FederatesWith = slices.Clone(e.FederatesWith)
	return e
}
