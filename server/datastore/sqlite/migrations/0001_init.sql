-- Schema version 1. Times are Unix nanoseconds (UTC); durations are
-- nanoseconds; lists are JSON arrays.

CREATE TABLE entries (
	id             TEXT    NOT NULL PRIMARY KEY,
	spiffe_id      TEXT    NOT NULL,
	parent_id      TEXT    NOT NULL,
	selectors      TEXT    NOT NULL CHECK (json_valid(selectors)),
	selectors_key  BLOB    NOT NULL CHECK (length(selectors_key) = 32), -- SHA-256 of registration.SelectorsKey
	x509_svid_ttl  INTEGER NOT NULL CHECK (x509_svid_ttl >= 0),
	jwt_svid_ttl   INTEGER NOT NULL CHECK (jwt_svid_ttl >= 0),
	dns_names      TEXT    NOT NULL CHECK (json_valid(dns_names)),
	federates_with TEXT    NOT NULL CHECK (json_valid(federates_with)),
	admin          INTEGER NOT NULL CHECK (admin IN (0, 1)),
	downstream     INTEGER NOT NULL CHECK (downstream IN (0, 1)),
	hint           TEXT    NOT NULL,
	revision       INTEGER NOT NULL,
	created_at     INTEGER NOT NULL,
	UNIQUE (spiffe_id, parent_id, selectors_key)
) STRICT;

CREATE TABLE entry_events (
	revision INTEGER NOT NULL PRIMARY KEY,
	entry_id TEXT    NOT NULL,
	deleted  INTEGER NOT NULL CHECK (deleted IN (0, 1))
) STRICT;

-- Every created entry gets its create event in the same statement, so an
-- entry can never exist without one.
CREATE TRIGGER entries_create_event AFTER INSERT ON entries
BEGIN
	INSERT INTO entry_events (revision, entry_id, deleted) VALUES (NEW.revision, NEW.id, 0);
END;

-- The store-wide revision counter: one row.
CREATE TABLE revision (
	id    INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
	value INTEGER NOT NULL CHECK (value >= 0)
) STRICT;
INSERT INTO revision (id, value) VALUES (1, 0);

CREATE TABLE agents (
	id               TEXT    NOT NULL PRIMARY KEY,
	attestation_type TEXT    NOT NULL,
	selectors        TEXT    NOT NULL CHECK (json_valid(selectors)),
	serial_number    TEXT    NOT NULL,
	expires_at       INTEGER,          -- NULL for the zero time
	can_reattest     INTEGER NOT NULL CHECK (can_reattest IN (0, 1)),
	created_at       INTEGER NOT NULL,
	updated_at       INTEGER NOT NULL
) STRICT;

-- Join tokens are stored as SHA-256 digests: a copy of the database does
-- not hand out usable tokens.
CREATE TABLE join_tokens (
	token_hash BLOB    NOT NULL PRIMARY KEY CHECK (length(token_hash) = 32),
	expires_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX join_tokens_expires_at ON join_tokens (expires_at);

CREATE TABLE kv (
	key   TEXT NOT NULL PRIMARY KEY,
	value BLOB NOT NULL
) STRICT;
