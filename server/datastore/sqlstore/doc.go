// Package sqlstore is the SQL core shared by the server datastore's SQL
// backends (sqlite and postgres): everything that is the same in both is
// written here once, so that a new column or query is written once.
//
// It owns the row codecs (times as Unix nanoseconds, agent selectors as
// JSON, entry lists as JSON text or text arrays, selector-set and join
// token digests, time-ordered entry IDs), the agent, join token, KV and
// entry queries with their validation and error wording, and the
// migration runner (numbered migrations, schema_version, refusal of newer
// schemas).
//
// A backend supplies a Dialect (the few SQL spellings that differ) and a
// Backend: its connections and transactions (one write connection and
// WAL snapshots in SQLite, a pool and repeatable-read snapshots in
// PostgreSQL), the bulk insert of entries (prepared statements in SQLite,
// COPY in PostgreSQL) and the commit of a new revision (with NOTIFY in
// PostgreSQL). Queries use $1-style placeholders, which both drivers
// accept. What only one backend has (file permissions and pragmas,
// LISTEN/NOTIFY watchers, event pruning, advisory locks) stays in it.
//
// It must not import a database driver, server wiring, the API layer,
// attestors or the CA.
package sqlstore
