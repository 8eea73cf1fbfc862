// Package postgres is the PostgreSQL backend of the server datastore: Open
// connects a pgx pool to one database and returns a Store implementing
// datastore.Store, datastore.ChangeNotifier, datastore.EvictionNotifier
// and datastore.KVNotifier. Several servers may share the database; that
// is what it is for.
//
// It owns the schema (embedded, numbered migrations tracked in a
// schema_version table and applied in one transaction under an advisory
// lock, so servers starting together are safe) and the rules that make
// sharing correct:
//
//   - Revisions: every entry change first locks the one-row revision
//     counter, so entry changes from all servers commit one at a time, in
//     revision order, without gaps. A sequence would be cheaper but commits
//     out of order: a reader could see revision 7 before 6 exists and never
//     learn about 6. ListEntries and EntryEventsSince read one snapshot
//     (repeatable read), so a list at revision r holds exactly the changes
//     up to r.
//   - Events: created entries get their event from a statement trigger in
//     the same statement; deletes write theirs in the same transaction.
//     Events are pruned after EventRetention (keeping the newest
//     EventKeep); EntryEventsSince for a pruned range fails with
//     datastore.ErrEventsPruned rather than return a partial list, and
//     EntryEventsHorizon says where the kept range starts.
//   - Notification: each committed entry change sends NOTIFY
//     hallmark_entries with the new revision (pg_notify inside the
//     transaction, so only commits are announced). WatchEntryChanges
//     listens on a dedicated connection, reconnects with backoff and
//     reports 0 after every (re)connection so the caller catches up.
//     KV writes (PutKV, a SwapKV that swapped) send NOTIFY hallmark_kv
//     with "=" and the key in the same statement ("*" for a key too long
//     to name, so that no write fails for its notification); WatchKV
//     reports the key, and "" (re-read everything) after every
//     (re)connection.
//   - Single use: ConsumeJoinToken is one DELETE ... RETURNING, CreateAgent
//     one INSERT ... ON CONFLICT DO NOTHING; PostgreSQL's row locks make
//     exactly one caller win across servers.
//
// Stored values match the SQLite backend: times are Unix nanoseconds in
// bigint columns (exact round trips), entry selectors "type:value" text
// arrays in the caller's order, agent selectors JSON, join tokens SHA-256
// digests. PostgreSQL text cannot hold NUL bytes, so strings containing
// one are refused with an error (SQLite would store them).
//
// The queries, row codecs and migration runner are the shared SQL core's
// (sqlstore); this package supplies the pgx pool and transactions, the
// PostgreSQL spellings (sqlstore.Dialect), the bulk insert of entries
// (one duplicate-check query and one COPY), the revision commit with its
// NOTIFY, the LISTEN watchers, event pruning and the migrations
// themselves. It keeps pgx's native API rather than database/sql: COPY,
// batched statements and text[] codecs are what keep bulk writes fast.
//
// It must not import server wiring, the API layer, attestors or the CA.
package postgres
