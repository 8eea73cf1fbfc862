// Package sqlite is the SQLite backend of the server datastore: one
// database file, opened with Open, that implements datastore.Store.
//
// It owns the on-disk schema (embedded, numbered migrations tracked in a
// schema_version table), the file's permissions (0600, directory 0700) and
// the write discipline: every write runs in a BEGIN IMMEDIATE transaction
// on a dedicated single-connection pool, so writers in one process queue
// in Go instead of failing with SQLITE_BUSY, while reads run concurrently
// on a separate query-only pool against WAL snapshots. Commits use
// synchronous=FULL: an acknowledged write survives a crash of the process.
//
// Selectors, DNS names and federated trust domains are stored as JSON
// arrays in their entry's row. JSON keeps the caller's order and every
// valid UTF-8 string exactly (strings that are not valid UTF-8 are refused
// rather than silently altered), costs one row per entry, which keeps bulk
// creation fast, and the server never queries by selector in SQL: it loads
// entries into its in-memory cache. Uniqueness uses a SHA-256 of the
// canonical selector key (registration.SelectorsKey) in a unique index
// beside the SPIFFE and parent IDs, so index rows stay small. An entry's
// create event is written by a trigger in the same statement as the entry;
// the store-wide revision is a one-row counter updated in the same
// transaction, so revisions are gap-free and commit in order.
//
// The queries, row codecs and migration runner are the shared SQL core's
// (sqlstore); this package supplies the connections and transactions
// above, the SQLite spellings (sqlstore.Dialect), the bulk insert of
// entries (one prepared statement) and the migrations themselves.
//
// It must not import server wiring, the API layer, attestors or the CA.
package sqlite
