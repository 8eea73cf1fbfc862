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

// lists are the scan destinations of an entry's three list columns.
type lists struct {
	json [3]string
	arr  [3][]string
}

func (d *Dialect) listDest(l *lists, i int) any {
	if d.TextArrays {
		return &l.arr[i]
	}
	return &l.json[i]
}

func (d *Dialect) strings(l *lists, i int) ([]string, error) {
	if d.TextArrays {
		if len(l.arr[i]) == 0 {
			return nil, nil
		}
		return l.arr[i], nil
	}
	return decodeJSONStrings(l.json[i])
}

// scanEntry reads one row of EntryColumns.
func (d *Dialect) scanEntry(row Row) (registration.Entry, error) {
	var (
		spiffeID, parentID     string
		x509TTL, jwtTTL, nanos int64
		l                      lists
		e                      registration.Entry
	)
	if err := row.Scan(&e.ID, &spiffeID, &parentID, d.listDest(&l, 0), &x509TTL, &jwtTTL,
		d.listDest(&l, 1), d.listDest(&l, 2), &e.Admin, &e.Downstream, &e.Hint, &e.Revision, &nanos); err != nil {
		return registration.Entry{}, err
	}
	e.X509SVIDTTL, e.JWTSVIDTTL = time.Duration(x509TTL), time.Duration(jwtTTL)
	e.CreatedAt = DecodeTime(nanos)
	var err error
	if e.SPIFFEID, err = spiffeid.FromString(spiffeID); err != nil {
		return registration.Entry{}, fmt.Errorf("entry %q: SPIFFE ID: %w", e.ID, err)
	}
	if e.ParentID, err = spiffeid.FromString(parentID); err != nil {
		return registration.Entry{}, fmt.Errorf("entry %q: parent ID: %w", e.ID, err)
	}
	if d.TextArrays {
		e.Selectors, err = DecodeEntrySelectors(l.arr[0])
	} else {
		e.Selectors, err = decodeJSONSelectors(l.json[0])
	}
	if err != nil {
		return registration.Entry{}, fmt.Errorf("entry %q: %w", e.ID, err)
	}
	if e.DNSNames, err = d.strings(&l, 1); err != nil {
		return registration.Entry{}, fmt.Errorf("entry %q: DNS names: %w", e.ID, err)
	}
	federates, err := d.strings(&l, 2)
	if err != nil {
		return registration.Entry{}, fmt.Errorf("entry %q: %w", e.ID, err)
	}
	if len(federates) > 0 {
		e.FederatesWith = make([]spiffeid.TrustDomain, len(federates))
		for i, name := range federates {
			if e.FederatesWith[i], err = spiffeid.TrustDomainFromString(name); err != nil {
				return registration.Entry{}, fmt.Errorf("entry %q: trust domain %q: %w", e.ID, name, err)
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
