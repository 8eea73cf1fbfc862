package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/datastore"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

const entryColumns = `id, spiffe_id, parent_id, selectors, x509_svid_ttl, jwt_svid_ttl,
	dns_names, federates_with, admin, downstream, hint, revision, created_at`

// entryRow is an entry in its stored form.
type entryRow struct {
	id, spiffeID, parentID   string
	selectors                string
	selectorsKey             []byte
	x509TTL, jwtTTL          int64
	dnsNames, federatesWith  string
	admin, downstream        bool
	hint                     string
	revision, createdAtNanos int64
}

// toRow checks the parts of e the store relies on and encodes it. Policy
// (trust domain, counts, DNS syntax) is the registration layer's job.
func toRow(e *registration.Entry) (entryRow, error) {
	if e.SPIFFEID.IsZero() {
		return entryRow{}, errors.New("SPIFFE ID is empty")
	}
	if e.ParentID.IsZero() {
		return entryRow{}, errors.New("parent ID is empty")
	}
	if err := checkEntryID(e.ID); err != nil {
		return entryRow{}, err
	}
	for _, s := range e.Selectors {
		if err := s.Validate(); err != nil {
			return entryRow{}, err
		}
	}
	if e.X509SVIDTTL < 0 || e.JWTSVIDTTL < 0 {
		return entryRow{}, errors.New("negative TTL")
	}
	if !utf8.ValidString(e.Hint) {
		return entryRow{}, errors.New("hint is not valid UTF-8")
	}
	r := entryRow{
		id:           e.ID,
		spiffeID:     e.SPIFFEID.String(),
		parentID:     e.ParentID.String(),
		selectorsKey: selectorsKeyHash(e.Selectors),
		x509TTL:      int64(e.X509SVIDTTL),
		jwtTTL:       int64(e.JWTSVIDTTL),
		admin:        e.Admin,
		downstream:   e.Downstream,
		hint:         e.Hint,
	}
	var err error
	if r.selectors, err = encodeSelectors(e.Selectors); err != nil {
		return entryRow{}, err
	}
	if r.dnsNames, err = encodeStrings(e.DNSNames); err != nil {
		return entryRow{}, fmt.Errorf("DNS names: %w", err)
	}
	if r.federatesWith, err = encodeTrustDomains(e.FederatesWith); err != nil {
		return entryRow{}, err
	}
	return r, nil
}

// CreateEntries inserts entries in one transaction. Each created entry
// gets its own revision, in slice order. An entry similar to an existing
// one (or to an earlier one in the batch), or whose caller-chosen ID is
// taken, is reported with datastore.ErrAlreadyExists and skipped. Any
// other failure, including an entry the store cannot represent, rolls the
// whole batch back.
func (s *Store) CreateEntries(ctx context.Context, entries []registration.Entry) ([]datastore.CreateResult, error) {
	defer s.timed("create_entries")()
	if len(entries) == 0 {
		return nil, nil
	}
	rows := make([]entryRow, len(entries))
	for i := range entries {
		r, err := toRow(&entries[i])
		if err != nil {
			return nil, fmt.Errorf("sqlite: create entries: entry %d: %w", i, err)
		}
		rows[i] = r
	}
	createdAt := s.now()
	createdNanos, err := encodeTime(createdAt)
	if err != nil {
		return nil, fmt.Errorf("sqlite: create entries: %w", err)
	}
	createdAt = decodeTime(createdNanos)

	results := make([]datastore.CreateResult, len(entries))
	err = s.write(ctx, "create entries", func(tx *sql.Tx) error {
		rev, err := currentRevision(ctx, tx)
		if err != nil {
			return fmt.Errorf("sqlite: create entries: %w", err)
		}
		ins, err := tx.PrepareContext(ctx, `INSERT INTO entries (`+entryColumns+`, selectors_key)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`)
		if err != nil {
			return fmt.Errorf("sqlite: create entries: prepare: %w", err)
		}
		defer ins.Close()

		ids := newIDGen(createdAt)
		for i := range rows {
			r := &rows[i]
			if r.id == "" {
				r.id = ids.next()
			}
			next := rev + 1
			res, err := ins.ExecContext(ctx, r.id, r.spiffeID, r.parentID, r.selectors, r.x509TTL, r.jwtTTL,
				r.dnsNames, r.federatesWith, r.admin, r.downstream, r.hint, next, createdNanos, r.selectorsKey)
			if err != nil {
				return fmt.Errorf("sqlite: create entries: entry %d: %w", i, err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return fmt.Errorf("sqlite: create entries: entry %d: %w", i, err)
			}
			if n == 0 {
				results[i] = datastore.CreateResult{Entry: cloneEntry(entries[i]), Err: datastore.ErrAlreadyExists}
				continue
			}
			rev = next
			e := cloneEntry(entries[i])
			e.ID, e.Revision, e.CreatedAt = r.id, next, createdAt
			results[i] = datastore.CreateResult{Entry: e}
		}
		return setRevision(ctx, tx, rev)
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// UpdateEntry replaces every field of the entry with ID e.ID except ID
// and CreatedAt, at a new revision with a create-like event.
func (s *Store) UpdateEntry(ctx context.Context, e registration.Entry) (registration.Entry, error) {
	defer s.timed("update_entry")()
	if e.ID == "" {
		return registration.Entry{}, fmt.Errorf("sqlite: update entry: %w (no entry ID)", datastore.ErrNotFound)
	}
	r, err := toRow(&e)
	if err != nil {
		return registration.Entry{}, fmt.Errorf("sqlite: update entry %q: %w", e.ID, err)
	}
	var updated registration.Entry
	err = s.write(ctx, "update entry", func(tx *sql.Tx) error {
		var createdNanos int64
		err := tx.QueryRowContext(ctx, `SELECT created_at FROM entries WHERE id = ?`, r.id).Scan(&createdNanos)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite: update entry %q: %w", r.id, datastore.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("sqlite: update entry %q: %w", r.id, err)
		}
		var other string
		err = tx.QueryRowContext(ctx, `SELECT id FROM entries
			WHERE spiffe_id = ? AND parent_id = ? AND selectors_key = ? AND id != ?`,
			r.spiffeID, r.parentID, r.selectorsKey, r.id).Scan(&other)
		if err == nil {
			return fmt.Errorf("sqlite: update entry %q: similar to entry %q: %w", r.id, other, datastore.ErrAlreadyExists)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite: update entry %q: duplicate check: %w", r.id, err)
		}
		rev, err := currentRevision(ctx, tx)
		if err != nil {
			return fmt.Errorf("sqlite: update entry %q: %w", r.id, err)
		}
		rev++
		if _, err := tx.ExecContext(ctx, `UPDATE entries SET spiffe_id = ?, parent_id = ?, selectors = ?, selectors_key = ?,
				x509_svid_ttl = ?, jwt_svid_ttl = ?, dns_names = ?, federates_with = ?, admin = ?, downstream = ?,
				hint = ?, revision = ? WHERE id = ?`,
			r.spiffeID, r.parentID, r.selectors, r.selectorsKey, r.x509TTL, r.jwtTTL, r.dnsNames, r.federatesWith,
			r.admin, r.downstream, r.hint, rev, r.id); err != nil {
			return fmt.Errorf("sqlite: update entry %q: %w", r.id, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO entry_events (revision, entry_id, deleted) VALUES (?, ?, 0)`, rev, r.id); err != nil {
			return fmt.Errorf("sqlite: update entry %q: event: %w", r.id, err)
		}
		updated = cloneEntry(e)
		updated.Revision, updated.CreatedAt = rev, decodeTime(createdNanos)
		return setRevision(ctx, tx, rev)
	})
	if err != nil {
		return registration.Entry{}, err
	}
	return updated, nil
}

// DeleteEntry removes an entry and returns it as it was stored.
func (s *Store) DeleteEntry(ctx context.Context, id string) (registration.Entry, error) {
	defer s.timed("delete_entry")()
	var e registration.Entry
	err := s.write(ctx, "delete entry", func(tx *sql.Tx) error {
		var err error
		e, err = scanEntry(tx.QueryRowContext(ctx, `SELECT `+entryColumns+` FROM entries WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite: delete entry %q: %w", id, datastore.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("sqlite: delete entry %q: %w", id, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM entries WHERE id = ?`, id); err != nil {
			return fmt.Errorf("sqlite: delete entry %q: %w", id, err)
		}
		rev, err := currentRevision(ctx, tx)
		if err != nil {
			return fmt.Errorf("sqlite: delete entry %q: %w", id, err)
		}
		rev++
		if _, err := tx.ExecContext(ctx, `INSERT INTO entry_events (revision, entry_id, deleted) VALUES (?, ?, 1)`, rev, id); err != nil {
			return fmt.Errorf("sqlite: delete entry %q: event: %w", id, err)
		}
		return setRevision(ctx, tx, rev)
	})
	if err != nil {
		return registration.Entry{}, err
	}
	return e, nil
}

// GetEntry returns one entry.
func (s *Store) GetEntry(ctx context.Context, id string) (registration.Entry, error) {
	defer s.timed("get_entry")()
	e, err := scanEntry(s.readDB.QueryRowContext(ctx, `SELECT `+entryColumns+` FROM entries WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return registration.Entry{}, fmt.Errorf("sqlite: get entry %q: %w", id, datastore.ErrNotFound)
	}
	if err != nil {
		return registration.Entry{}, fmt.Errorf("sqlite: get entry %q: %w", id, err)
	}
	return e, nil
}

// ListEntries returns every entry, oldest change first, and the revision
// they are current to, both read from one snapshot.
func (s *Store) ListEntries(ctx context.Context) ([]registration.Entry, int64, error) {
	defer s.timed("list_entries")()
	var (
		entries []registration.Entry
		rev     int64
	)
	err := s.read(ctx, "list entries", func(tx *sql.Tx) error {
		var err error
		if rev, err = currentRevision(ctx, tx); err != nil {
			return fmt.Errorf("sqlite: list entries: %w", err)
		}
		rows, err := tx.QueryContext(ctx, `SELECT `+entryColumns+` FROM entries ORDER BY revision`)
		if err != nil {
			return fmt.Errorf("sqlite: list entries: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			e, err := scanEntry(rows)
			if err != nil {
				return fmt.Errorf("sqlite: list entries: %w", err)
			}
			entries = append(entries, e)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("sqlite: list entries: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return entries, rev, nil
}

// EntryEventsSince returns changes with revision > rev, oldest first.
func (s *Store) EntryEventsSince(ctx context.Context, rev int64) ([]datastore.EntryEvent, error) {
	defer s.timed("entry_events_since")()
	rows, err := s.readDB.QueryContext(ctx,
		`SELECT revision, entry_id, deleted FROM entry_events WHERE revision > ? ORDER BY revision`, rev)
	if err != nil {
		return nil, fmt.Errorf("sqlite: entry events: %w", err)
	}
	defer rows.Close()
	var events []datastore.EntryEvent
	for rows.Next() {
		var ev datastore.EntryEvent
		if err := rows.Scan(&ev.Revision, &ev.EntryID, &ev.Deleted); err != nil {
			return nil, fmt.Errorf("sqlite: entry events: %w", err)
		}
		events = append(events, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: entry events: %w", err)
	}
	return events, nil
}

type scanner interface{ Scan(dest ...any) error }

func scanEntry(sc scanner) (registration.Entry, error) {
	var r entryRow
	if err := sc.Scan(&r.id, &r.spiffeID, &r.parentID, &r.selectors, &r.x509TTL, &r.jwtTTL,
		&r.dnsNames, &r.federatesWith, &r.admin, &r.downstream, &r.hint, &r.revision, &r.createdAtNanos); err != nil {
		return registration.Entry{}, err
	}
	e := registration.Entry{
		ID:          r.id,
		X509SVIDTTL: durationNanos(r.x509TTL),
		JWTSVIDTTL:  durationNanos(r.jwtTTL),
		Admin:       r.admin,
		Downstream:  r.downstream,
		Hint:        r.hint,
		Revision:    r.revision,
		CreatedAt:   decodeTime(r.createdAtNanos),
	}
	var err error
	if e.SPIFFEID, err = spiffeid.FromString(r.spiffeID); err != nil {
		return registration.Entry{}, fmt.Errorf("entry %q: SPIFFE ID: %w", r.id, err)
	}
	if e.ParentID, err = spiffeid.FromString(r.parentID); err != nil {
		return registration.Entry{}, fmt.Errorf("entry %q: parent ID: %w", r.id, err)
	}
	if e.Selectors, err = decodeSelectors(r.selectors); err != nil {
		return registration.Entry{}, fmt.Errorf("entry %q: %w", r.id, err)
	}
	if e.DNSNames, err = decodeStrings(r.dnsNames); err != nil {
		return registration.Entry{}, fmt.Errorf("entry %q: DNS names: %w", r.id, err)
	}
	if e.FederatesWith, err = decodeTrustDomains(r.federatesWith); err != nil {
		return registration.Entry{}, fmt.Errorf("entry %q: %w", r.id, err)
	}
	return e, nil
}

func currentRevision(ctx context.Context, tx *sql.Tx) (int64, error) {
	var rev int64
	if err := tx.QueryRowContext(ctx, `SELECT value FROM revision WHERE id = 1`).Scan(&rev); err != nil {
		return 0, fmt.Errorf("read revision: %w", err)
	}
	return rev, nil
}

func setRevision(ctx context.Context, tx *sql.Tx, rev int64) error {
	if _, err := tx.ExecContext(ctx, `UPDATE revision SET value = ? WHERE id = 1`, rev); err != nil {
		return fmt.Errorf("sqlite: set revision: %w", err)
	}
	return nil
}

// cloneEntry copies e so results do not alias the caller's slices.
func cloneEntry(e registration.Entry) registration.Entry {
	e.Selectors = slices.Clone(e.Selectors)
	e.DNSNames = slices.Clone(e.DNSNames)
	e.FederatesWith = slices.Clone(e.FederatesWith)
	return e
}
