package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/datastore"
)

// queries are the statements whose text depends on the dialect, built
// once.
type queries struct {
	updateAgent, promoteAgentSerial, listAgents string
}

func buildQueries(d *Dialect) queries {
	return queries{
		updateAgent: `UPDATE agents SET attestation_type = $1, selectors = $2, serial_number = $3,
		expires_at = $4, can_reattest = $5, new_serial_number = $6, updated_at = ` + d.Greatest + `($7, created_at)
		WHERE id = $8 AND NOT banned`,
		promoteAgentSerial: `UPDATE agents SET serial_number = new_serial_number, new_serial_number = '',
		updated_at = ` + d.Greatest + `($1, created_at) WHERE id = $2 AND new_serial_number = $3 AND new_serial_number <> '' AND NOT banned`,
		listAgents: agentSelect + ` ORDER BY id` + d.ByteOrder,
	}
}

// CreateEntries inserts entries in one transaction. Each created entry
// gets its own revision, in slice order. An entry similar to an existing
// one (or to an earlier one in the batch), or whose caller-chosen ID is
// taken, is reported with datastore.ErrAlreadyExists and skipped. Any
// other failure, including an entry the store cannot represent, rolls the
// whole batch back.
//
// The transaction first takes the revision counter (LockRevision), which
// every entry change does, so the duplicate checks see no concurrent entry
// writer, in this process or another.
func (c *Core) CreateEntries(ctx context.Context, entries []registration.Entry) ([]datastore.CreateResult, error) {
	defer c.Timed("create_entries")()
	if len(entries) == 0 {
		return nil, nil
	}
	rows := make([]EntryRow, len(entries))
	for i := range entries {
		r, err := c.d.toRow(&entries[i])
		if err != nil {
			return nil, c.errorf("create entries: entry %d: %w", i, err)
		}
		rows[i] = r
	}
	createdAt := c.now()
	createdNanos, err := EncodeTime(createdAt)
	if err != nil {
		return nil, c.errorf("create entries: %w", err)
	}
	createdAt = DecodeTime(createdNanos)
	ids := newIDGen(createdAt)
	for i := range rows {
		if rows[i].ID == "" {
			rows[i].ID = ids.next()
		}
	}

	results := make([]datastore.CreateResult, len(entries))
	err = c.b.Write(ctx, "create entries", func(q Querier) error {
		rev, err := c.lockRevision(ctx, q)
		if err != nil {
			return c.errorf("create entries: %w", err)
		}
		revs, err := c.b.InsertEntries(ctx, q, rows, rev, createdNanos)
		if err != nil {
			return err
		}
		last := rev
		for i, r := range revs {
			if r == 0 {
				results[i] = datastore.CreateResult{Entry: cloneEntry(entries[i]), Err: datastore.ErrAlreadyExists}
				continue
			}
			last = r
			e := cloneEntry(entries[i])
			e.ID, e.Revision, e.CreatedAt = rows[i].ID, r, createdAt
			results[i] = datastore.CreateResult{Entry: e}
		}
		if last == rev {
			return nil // nothing created
		}
		return c.b.CommitRevision(ctx, q, last, nil)
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// UpdateEntry replaces every field of the entry with ID e.ID except ID
// and CreatedAt, at a new revision with a create-like event. Like every
// entry change it takes the revision counter first, so the duplicate
// check sees no concurrent writer.
func (c *Core) UpdateEntry(ctx context.Context, e registration.Entry) (registration.Entry, error) {
	defer c.Timed("update_entry")()
	if e.ID == "" || !c.d.storable(e.ID) {
		return registration.Entry{}, c.errorf("update entry %q: %w", e.ID, datastore.ErrNotFound)
	}
	r, err := c.d.toRow(&e)
	if err != nil {
		return registration.Entry{}, c.errorf("update entry %q: %w", e.ID, err)
	}
	var updated registration.Entry
	err = c.b.Write(ctx, "update entry", func(q Querier) error {
		rev, err := c.lockRevision(ctx, q)
		if err != nil {
			return c.errorf("update entry %q: %w", r.ID, err)
		}
		// The entry's creation time, and another entry it would be
		// similar to, in one round trip.
		var (
			createdNanos *int64
			other        *string
		)
		err = q.QueryRow(ctx, `SELECT (SELECT created_at FROM entries WHERE id = $4),
			(SELECT id FROM entries WHERE spiffe_id = $1 AND parent_id = $2 AND selectors_key = $3 AND id <> $4 LIMIT 1)`,
			r.SPIFFEID, r.ParentID, r.SelectorsKey, r.ID).Scan(&createdNanos, &other)
		switch {
		case err != nil:
			return c.errorf("update entry %q: %w", r.ID, err)
		case createdNanos == nil:
			return c.errorf("update entry %q: %w", r.ID, datastore.ErrNotFound)
		case other != nil:
			return c.errorf("update entry %q: similar to entry %q: %w", r.ID, *other, datastore.ErrAlreadyExists)
		}
		rev++
		if _, err := q.Exec(ctx, `UPDATE entries SET spiffe_id = $1, parent_id = $2, selectors = $3, selectors_key = $4,
				x509_svid_ttl = $5, jwt_svid_ttl = $6, dns_names = $7, federates_with = $8, admin = $9, downstream = $10,
				hint = $11, revision = $12 WHERE id = $13`,
			r.SPIFFEID, r.ParentID, r.Selectors, r.SelectorsKey, r.X509TTL, r.JWTTTL, r.DNSNames, r.FederatesWith,
			r.Admin, r.Downstream, r.Hint, rev, r.ID); err != nil {
			return c.errorf("update entry %q: %w", r.ID, err)
		}
		updated = cloneEntry(e)
		updated.Revision, updated.CreatedAt = rev, DecodeTime(*createdNanos)
		return c.b.CommitRevision(ctx, q, rev, &datastore.EntryEvent{Revision: rev, EntryID: r.ID})
	})
	if err != nil {
		return registration.Entry{}, err
	}
	return updated, nil
}

// DeleteEntry removes an entry and returns it as it was stored.
func (c *Core) DeleteEntry(ctx context.Context, id string) (registration.Entry, error) {
	defer c.Timed("delete_entry")()
	if !c.d.storable(id) {
		return registration.Entry{}, c.errorf("delete entry %q: %w", id, datastore.ErrNotFound)
	}
	var e registration.Entry
	err := c.b.Write(ctx, "delete entry", func(q Querier) error {
		rev, err := c.lockRevision(ctx, q)
		if err != nil {
			return c.errorf("delete entry %q: %w", id, err)
		}
		e, err = c.d.scanEntry(q.QueryRow(ctx, `DELETE FROM entries WHERE id = $1 RETURNING `+EntryColumns, id))
		if errors.Is(err, sql.ErrNoRows) {
			return c.errorf("delete entry %q: %w", id, datastore.ErrNotFound)
		}
		if err != nil {
			return c.errorf("delete entry %q: %w", id, err)
		}
		rev++
		return c.b.CommitRevision(ctx, q, rev, &datastore.EntryEvent{Revision: rev, EntryID: id, Deleted: true})
	})
	if err != nil {
		return registration.Entry{}, err
	}
	return e, nil
}

// GetEntry returns one entry.
func (c *Core) GetEntry(ctx context.Context, id string) (registration.Entry, error) {
	defer c.Timed("get_entry")()
	if !c.d.storable(id) {
		return registration.Entry{}, c.errorf("get entry %q: %w", id, datastore.ErrNotFound)
	}
	e, err := c.d.scanEntry(c.b.Reader().QueryRow(ctx, `SELECT `+EntryColumns+` FROM entries WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return registration.Entry{}, c.errorf("get entry %q: %w", id, datastore.ErrNotFound)
	}
	if err != nil {
		return registration.Entry{}, c.errorf("get entry %q: %w", id, err)
	}
	return e, nil
}

// ListEntries returns every entry, oldest change first, and the revision
// they are current to, both read from one snapshot.
func (c *Core) ListEntries(ctx context.Context) ([]registration.Entry, int64, error) {
	defer c.Timed("list_entries")()
	var (
		entries []registration.Entry
		rev     int64
	)
	err := c.b.Read(ctx, "list entries", func(q Querier) error {
		var n int64
		if err := q.QueryRow(ctx, `SELECT (SELECT value FROM revision WHERE id = 1), (SELECT count(*) FROM entries)`).
			Scan(&rev, &n); err != nil {
			return c.errorf("list entries: read revision: %w", err)
		}
		entries = make([]registration.Entry, 0, n)
		rows, err := q.Query(ctx, `SELECT `+EntryColumns+` FROM entries ORDER BY revision`)
		if err != nil {
			return c.errorf("list entries: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			e, err := c.d.scanEntry(rows)
			if err != nil {
				return c.errorf("list entries: %w", err)
			}
			entries = append(entries, e)
		}
		if err := rows.Err(); err != nil {
			return c.errorf("list entries: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return entries, rev, nil
}

// EntryEventsSince returns changes with revision > rev, oldest first. Where
// events are pruned (Dialect.EventsHorizon) and events after rev are gone,
// it fails with an error wrapping datastore.ErrEventsPruned: the caller
// must reload with ListEntries.
func (c *Core) EntryEventsSince(ctx context.Context, rev int64) ([]datastore.EntryEvent, error) {
	defer c.Timed("entry_events_since")()
	var events []datastore.EntryEvent
	since := func(q Querier) error {
		rows, err := q.Query(ctx, `SELECT revision, entry_id, deleted FROM entry_events WHERE revision > $1 ORDER BY revision`, rev)
		if err != nil {
			return c.errorf("entry events: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var ev datastore.EntryEvent
			if err := rows.Scan(&ev.Revision, &ev.EntryID, &ev.Deleted); err != nil {
				return c.errorf("entry events: %w", err)
			}
			events = append(events, ev)
		}
		if err := rows.Err(); err != nil {
			return c.errorf("entry events: %w", err)
		}
		return nil
	}
	if c.d.EventsHorizon == "" {
		if err := since(c.b.Reader()); err != nil {
			return nil, err
		}
		return events, nil
	}
	err := c.b.Read(ctx, "entry events", func(q Querier) error {
		var pruned int64
		if err := q.QueryRow(ctx, c.d.EventsHorizon).Scan(&pruned); err != nil {
			return c.errorf("entry events: %w", err)
		}
		if rev < pruned {
			return c.errorf("entry events since %d: %w (events up to %d are gone)", rev, datastore.ErrEventsPruned, pruned)
		}
		return since(q)
	})
	if err != nil {
		return nil, err
	}
	return events, nil
}

// lockRevision returns the current revision, held (where the dialect
// needs to) until the transaction ends.
func (c *Core) lockRevision(ctx context.Context, q Querier) (int64, error) {
	var rev int64
	if err := q.QueryRow(ctx, c.d.LockRevision).Scan(&rev); err != nil {
		return 0, fmt.Errorf("lock revision: %w", err)
	}
	return rev, nil
}
