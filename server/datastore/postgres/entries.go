package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/datastore"
)

const entryColumns = `id, spiffe_id, parent_id, selectors, x509_svid_ttl, jwt_svid_ttl,
	dns_names, federates_with, admin, downstream, hint, revision, created_at`

// entryCopyColumns are the columns CreateEntries copies in, in this order.
var entryCopyColumns = []string{"id", "spiffe_id", "parent_id", "selectors", "selectors_key", "x509_svid_ttl",
	"jwt_svid_ttl", "dns_names", "federates_with", "admin", "downstream", "hint", "revision", "created_at"}

// entryRow is an entry in its stored form.
type entryRow struct {
	id, spiffeID, parentID  string
	selectors               []string
	selectorsKey            []byte
	x509TTL, jwtTTL         int64
	dnsNames, federatesWith []string
	admin, downstream       bool
	hint                    string
}

// uniqueKey is the row's (spiffe_id, parent_id, selectors_key) as one
// string; the separators cannot occur in SPIFFE IDs.
func (r *entryRow) uniqueKey() string {
	return r.spiffeID + "\x00" + r.parentID + "\x00" + string(r.selectorsKey)
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
		if !utf8.ValidString(s.Value) {
			return entryRow{}, errors.New("selector is not valid UTF-8")
		}
	}
	if e.X509SVIDTTL < 0 || e.JWTSVIDTTL < 0 {
		return entryRow{}, errors.New("negative TTL")
	}
	if err := checkText("hint", e.Hint); err != nil {
		return entryRow{}, err
	}
	if err := checkTexts("DNS name", e.DNSNames); err != nil {
		return entryRow{}, fmt.Errorf("DNS names: %w", err)
	}
	r := entryRow{
		id:           e.ID,
		spiffeID:     e.SPIFFEID.String(),
		parentID:     e.ParentID.String(),
		selectors:    encodeEntrySelectors(e.Selectors),
		selectorsKey: selectorsKeyHash(e.Selectors),
		x509TTL:      int64(e.X509SVIDTTL),
		jwtTTL:       int64(e.JWTSVIDTTL),
		dnsNames:     append([]string{}, e.DNSNames...), // never nil: nil is SQL NULL
		admin:        e.Admin,
		downstream:   e.Downstream,
		hint:         e.Hint,
	}
	r.federatesWith = make([]string, len(e.FederatesWith))
	for i, td := range e.FederatesWith {
		if td.IsZero() {
			return entryRow{}, errors.New("federated trust domain is empty")
		}
		r.federatesWith[i] = td.Name()
	}
	return r, nil
}

// CreateEntries inserts entries in one transaction. Each created entry
// gets its own revision, in slice order. An entry similar to an existing
// one (or to an earlier one in the batch), or whose caller-chosen ID is
// taken, is reported with datastore.ErrAlreadyExists and skipped. Any
// other failure, including an entry the store cannot represent, rolls the
// whole batch back.
//
// The transaction first locks the revision counter, which every entry
// change does, so the duplicate check and the insert see no concurrent
// entry writer, whichever server it runs on; the rows then go in with one
// COPY.
func (s *Store) CreateEntries(ctx context.Context, entries []registration.Entry) ([]datastore.CreateResult, error) {
	defer s.timed("create_entries")()
	if len(entries) == 0 {
		return nil, nil
	}
	rows := make([]entryRow, len(entries))
	for i := range entries {
		r, err := toRow(&entries[i])
		if err != nil {
			return nil, fmt.Errorf("postgres: create entries: entry %d: %w", i, err)
		}
		rows[i] = r
	}
	createdAt := s.now()
	createdNanos, err := encodeTime(createdAt)
	if err != nil {
		return nil, fmt.Errorf("postgres: create entries: %w", err)
	}
	createdAt = decodeTime(createdNanos)
	ids := newIDGen(createdAt)
	for i := range rows {
		if rows[i].id == "" {
			rows[i].id = ids.next()
		}
	}

	results := make([]datastore.CreateResult, len(entries))
	err = s.write(ctx, "create entries", func(tx pgx.Tx) error {
		rev, err := lockRevision(ctx, tx)
		if err != nil {
			return fmt.Errorf("postgres: create entries: %w", err)
		}
		taken, err := conflicts(ctx, tx, rows)
		if err != nil {
			return fmt.Errorf("postgres: create entries: %w", err)
		}
		var (
			seenIDs  = make(map[string]bool, len(rows))
			seenKeys = make(map[string]bool, len(rows))
			copyRows = make([][]any, 0, len(rows))
		)
		for i := range rows {
			r := &rows[i]
			key := r.uniqueKey()
			if taken[i] || seenIDs[r.id] || seenKeys[key] {
				results[i] = datastore.CreateResult{Entry: cloneEntry(entries[i]), Err: datastore.ErrAlreadyExists}
				continue
			}
			seenIDs[r.id], seenKeys[key] = true, true
			rev++
			copyRows = append(copyRows, []any{r.id, r.spiffeID, r.parentID, r.selectors, r.selectorsKey, r.x509TTL,
				r.jwtTTL, r.dnsNames, r.federatesWith, r.admin, r.downstream, r.hint, rev, createdNanos})
			e := cloneEntry(entries[i])
			e.ID, e.Revision, e.CreatedAt = r.id, rev, createdAt
			results[i] = datastore.CreateResult{Entry: e}
		}
		if len(copyRows) == 0 {
			return nil
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"entries"}, entryCopyColumns, pgx.CopyFromRows(copyRows)); err != nil {
			return fmt.Errorf("postgres: create entries: copy: %w", err)
		}
		return setRevision(ctx, tx, rev, nil)
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// conflicts reports, for each row, whether its ID or its (SPIFFE ID,
// parent, selectors) is already stored.
func conflicts(ctx context.Context, tx pgx.Tx, rows []entryRow) ([]bool, error) {
	var (
		ids     = make([]string, len(rows))
		spiffes = make([]string, len(rows))
		parents = make([]string, len(rows))
		keys    = make([][]byte, len(rows))
	)
	for i, r := range rows {
		ids[i], spiffes[i], parents[i], keys[i] = r.id, r.spiffeID, r.parentID, r.selectorsKey
	}
	res, err := tx.Query(ctx, `SELECT b.i FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[])
			WITH ORDINALITY AS b(id, spiffe_id, parent_id, selectors_key, i)
		WHERE EXISTS (SELECT 1 FROM entries e WHERE e.id = b.id)
		   OR EXISTS (SELECT 1 FROM entries e WHERE e.spiffe_id = b.spiffe_id AND e.parent_id = b.parent_id
		              AND e.selectors_key = b.selectors_key)`, ids, spiffes, parents, keys)
	if err != nil {
		return nil, fmt.Errorf("duplicate check: %w", err)
	}
	taken := make([]bool, len(rows))
	var i int64
	if _, err := pgx.ForEachRow(res, []any{&i}, func() error {
		if i < 1 || i > int64(len(rows)) {
			return fmt.Errorf("duplicate check: row %d out of range", i)
		}
		taken[i-1] = true
		return nil
	}); err != nil {
		return nil, fmt.Errorf("duplicate check: %w", err)
	}
	return taken, nil
}

// UpdateEntry replaces every field of the entry with ID e.ID except ID
// and CreatedAt, at a new revision with a create-like event. Like every
// entry change it locks the revision counter first, so the duplicate check
// sees no concurrent writer on any server; the commit notifies watchers.
func (s *Store) UpdateEntry(ctx context.Context, e registration.Entry) (registration.Entry, error) {
	defer s.timed("update_entry")()
	if e.ID == "" || !storable(e.ID) {
		return registration.Entry{}, fmt.Errorf("postgres: update entry %q: %w", e.ID, datastore.ErrNotFound)
	}
	r, err := toRow(&e)
	if err != nil {
		return registration.Entry{}, fmt.Errorf("postgres: update entry %q: %w", e.ID, err)
	}
	var updated registration.Entry
	err = s.write(ctx, "update entry", func(tx pgx.Tx) error {
		rev, err := lockRevision(ctx, tx)
		if err != nil {
			return fmt.Errorf("postgres: update entry %q: %w", r.id, err)
		}
		var other string
		err = tx.QueryRow(ctx, `SELECT id FROM entries
			WHERE spiffe_id = $1 AND parent_id = $2 AND selectors_key = $3 AND id <> $4`,
			r.spiffeID, r.parentID, r.selectorsKey, r.id).Scan(&other)
		if err == nil {
			return fmt.Errorf("postgres: update entry %q: similar to entry %q: %w", r.id, other, datastore.ErrAlreadyExists)
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("postgres: update entry %q: duplicate check: %w", r.id, err)
		}
		rev++
		var createdNanos int64
		err = tx.QueryRow(ctx, `UPDATE entries SET spiffe_id = $1, parent_id = $2, selectors = $3, selectors_key = $4,
				x509_svid_ttl = $5, jwt_svid_ttl = $6, dns_names = $7, federates_with = $8, admin = $9, downstream = $10,
				hint = $11, revision = $12 WHERE id = $13 RETURNING created_at`,
			r.spiffeID, r.parentID, r.selectors, r.selectorsKey, r.x509TTL, r.jwtTTL, r.dnsNames, r.federatesWith,
			r.admin, r.downstream, r.hint, rev, r.id).Scan(&createdNanos)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("postgres: update entry %q: %w", r.id, datastore.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("postgres: update entry %q: %w", r.id, err)
		}
		updated = cloneEntry(e)
		updated.Revision, updated.CreatedAt = rev, decodeTime(createdNanos)
		return setRevision(ctx, tx, rev, func(b *pgx.Batch) {
			b.Queue(`INSERT INTO entry_events (revision, entry_id, deleted) VALUES ($1, $2, false)`, rev, r.id)
		})
	})
	if err != nil {
		return registration.Entry{}, err
	}
	return updated, nil
}

// DeleteEntry removes an entry and returns it as it was stored.
func (s *Store) DeleteEntry(ctx context.Context, id string) (registration.Entry, error) {
	defer s.timed("delete_entry")()
	if !storable(id) {
		return registration.Entry{}, fmt.Errorf("postgres: delete entry %q: %w", id, datastore.ErrNotFound)
	}
	var e registration.Entry
	err := s.write(ctx, "delete entry", func(tx pgx.Tx) error {
		rev, err := lockRevision(ctx, tx)
		if err != nil {
			return fmt.Errorf("postgres: delete entry %q: %w", id, err)
		}
		e, err = scanEntry(tx.QueryRow(ctx, `DELETE FROM entries WHERE id = $1 RETURNING `+entryColumns, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("postgres: delete entry %q: %w", id, datastore.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("postgres: delete entry %q: %w", id, err)
		}
		rev++
		return setRevision(ctx, tx, rev, func(b *pgx.Batch) {
			b.Queue(`INSERT INTO entry_events (revision, entry_id, deleted) VALUES ($1, $2, true)`, rev, id)
		})
	})
	if err != nil {
		return registration.Entry{}, err
	}
	return e, nil
}

// GetEntry returns one entry.
func (s *Store) GetEntry(ctx context.Context, id string) (registration.Entry, error) {
	defer s.timed("get_entry")()
	if !storable(id) {
		return registration.Entry{}, fmt.Errorf("postgres: get entry %q: %w", id, datastore.ErrNotFound)
	}
	e, err := scanEntry(s.pool.QueryRow(ctx, `SELECT `+entryColumns+` FROM entries WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return registration.Entry{}, fmt.Errorf("postgres: get entry %q: %w", id, datastore.ErrNotFound)
	}
	if err != nil {
		return registration.Entry{}, fmt.Errorf("postgres: get entry %q: %w", id, err)
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
	err := s.read(ctx, "list entries", func(tx pgx.Tx) error {
		var n int64
		if err := tx.QueryRow(ctx, `SELECT (SELECT value FROM revision WHERE id = 1), (SELECT count(*) FROM entries)`).
			Scan(&rev, &n); err != nil {
			return fmt.Errorf("postgres: list entries: read revision: %w", err)
		}
		entries = make([]registration.Entry, 0, n)
		rows, err := tx.Query(ctx, `SELECT `+entryColumns+` FROM entries ORDER BY revision`)
		if err != nil {
			return fmt.Errorf("postgres: list entries: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			e, err := scanEntry(rows)
			if err != nil {
				return fmt.Errorf("postgres: list entries: %w", err)
			}
			entries = append(entries, e)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("postgres: list entries: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return entries, rev, nil
}

// EntryEventsSince returns changes with revision > rev, oldest first. If
// events after rev have been pruned it fails with an error wrapping
// datastore.ErrEventsPruned: the caller must reload with ListEntries.
func (s *Store) EntryEventsSince(ctx context.Context, rev int64) ([]datastore.EntryEvent, error) {
	defer s.timed("entry_events_since")()
	var events []datastore.EntryEvent
	err := s.read(ctx, "entry events", func(tx pgx.Tx) error {
		var pruned int64
		if err := tx.QueryRow(ctx, `SELECT revision FROM entry_events_pruned WHERE id = 1`).Scan(&pruned); err != nil {
			return fmt.Errorf("postgres: entry events: %w", err)
		}
		if rev < pruned {
			return fmt.Errorf("postgres: entry events since %d: %w (events up to %d are gone)", rev, datastore.ErrEventsPruned, pruned)
		}
		rows, err := tx.Query(ctx, `SELECT revision, entry_id, deleted FROM entry_events WHERE revision > $1 ORDER BY revision`, rev)
		if err != nil {
			return fmt.Errorf("postgres: entry events: %w", err)
		}
		var ev datastore.EntryEvent
		_, err = pgx.ForEachRow(rows, []any{&ev.Revision, &ev.EntryID, &ev.Deleted}, func() error {
			events = append(events, ev)
			return nil
		})
		if err != nil {
			return fmt.Errorf("postgres: entry events: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return events, nil
}

// EntryEventsHorizon returns the revision up to which entry events may
// have been pruned: EntryEventsSince(rev) is complete for every rev at or
// above it, and fails with datastore.ErrEventsPruned below it.
func (s *Store) EntryEventsHorizon(ctx context.Context) (int64, error) {
	defer s.timed("entry_events_horizon")()
	var pruned int64
	if err := s.pool.QueryRow(ctx, `SELECT revision FROM entry_events_pruned WHERE id = 1`).Scan(&pruned); err != nil {
		return 0, fmt.Errorf("postgres: entry events horizon: %w", err)
	}
	return pruned, nil
}

// PruneEntryEvents deletes entry events recorded (by the database's clock)
// before the given time, but never any of the newest keep events, and
// returns the new horizon (see EntryEventsHorizon). Open runs it hourly
// with EventRetention and EventKeep; concurrent calls from several servers
// are harmless.
func (s *Store) PruneEntryEvents(ctx context.Context, before time.Time, keep int64) (int64, error) {
	defer s.timed("prune_entry_events")()
	if keep < 0 {
		keep = 0
	}
	var horizon int64
	err := s.write(ctx, "prune entry events", func(tx pgx.Tx) error {
		var cut int64
		if err := tx.QueryRow(ctx, `SELECT LEAST(
				(SELECT coalesce(max(revision), 0) FROM entry_events WHERE created_at < $1),
				(SELECT value FROM revision WHERE id = 1) - $2)`, before, keep).Scan(&cut); err != nil {
			return fmt.Errorf("postgres: prune entry events: %w", err)
		}
		if err := tx.QueryRow(ctx, `UPDATE entry_events_pruned SET revision = GREATEST(revision, $1) WHERE id = 1
				RETURNING revision`, cut).Scan(&horizon); err != nil {
			return fmt.Errorf("postgres: prune entry events: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM entry_events WHERE revision <= $1`, horizon); err != nil {
			return fmt.Errorf("postgres: prune entry events: %w", err)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return horizon, nil
}

func scanEntry(row pgx.Row) (registration.Entry, error) {
	var (
		id, spiffeID, parentID, hint string
		selectors, dns, federates    []string
		x509TTL, jwtTTL, rev, nanos  int64
		e                            registration.Entry
	)
	if err := row.Scan(&id, &spiffeID, &parentID, &selectors, &x509TTL, &jwtTTL,
		&dns, &federates, &e.Admin, &e.Downstream, &hint, &rev, &nanos); err != nil {
		return registration.Entry{}, err
	}
	e.ID, e.Hint, e.Revision = id, hint, rev
	e.X509SVIDTTL, e.JWTSVIDTTL = time.Duration(x509TTL), time.Duration(jwtTTL)
	e.CreatedAt = decodeTime(nanos)
	var err error
	if e.SPIFFEID, err = spiffeid.FromString(spiffeID); err != nil {
		return registration.Entry{}, fmt.Errorf("entry %q: SPIFFE ID: %w", id, err)
	}
	if e.ParentID, err = spiffeid.FromString(parentID); err != nil {
		return registration.Entry{}, fmt.Errorf("entry %q: parent ID: %w", id, err)
	}
	if e.Selectors, err = decodeEntrySelectors(selectors); err != nil {
		return registration.Entry{}, fmt.Errorf("entry %q: %w", id, err)
	}
	if len(dns) > 0 {
		e.DNSNames = dns
	}
	if len(federates) > 0 {
		e.FederatesWith = make([]spiffeid.TrustDomain, len(federates))
		for i, name := range federates {
			if e.FederatesWith[i], err = spiffeid.TrustDomainFromString(name); err != nil {
				return registration.Entry{}, fmt.Errorf("entry %q: trust domain %q: %w", id, name, err)
			}
		}
	}
	return e, nil
}

// lockRevision locks the revision counter until the transaction ends and
// returns its value. Every entry change takes this lock first.
func lockRevision(ctx context.Context, tx pgx.Tx) (int64, error) {
	var rev int64
	if err := tx.QueryRow(ctx, `SELECT value FROM revision WHERE id = 1 FOR UPDATE`).Scan(&rev); err != nil {
		return 0, fmt.Errorf("lock revision: %w", err)
	}
	return rev, nil
}

// setRevision stores rev as the current revision and queues the change
// notification, which PostgreSQL delivers only if the transaction
// commits; more statements may be queued in the same round trip.
func setRevision(ctx context.Context, tx pgx.Tx, rev int64, more func(b *pgx.Batch)) error {
	b := &pgx.Batch{}
	if more != nil {
		more(b)
	}
	b.Queue(`UPDATE revision SET value = $1 WHERE id = 1`, rev)
	b.Queue(`SELECT pg_notify($1, $2)`, NotifyChannel, strconv.FormatInt(rev, 10))
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("postgres: set revision: %w", err)
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
