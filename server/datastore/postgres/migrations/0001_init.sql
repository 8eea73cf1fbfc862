-- Schema version 1. Times are Unix nanoseconds (UTC) in bigint columns, so
-- they round-trip exactly as in the SQLite backend; durations are
-- nanoseconds. Entry selectors are "type:value" strings (a selector type
-- never contains ':'), in the caller's order.

CREATE TABLE entries (
	id             text    NOT NULL PRIMARY KEY,
	spiffe_id      text    NOT NULL,
	parent_id      text    NOT NULL,
	selectors      text[]  NOT NULL,
	selectors_key  bytea   NOT NULL CHECK (length(selectors_key) = 32), -- SHA-256 of registration.SelectorsKey
	x509_svid_ttl  bigint  NOT NULL CHECK (x509_svid_ttl >= 0),
	jwt_svid_ttl   bigint  NOT NULL CHECK (jwt_svid_ttl >= 0),
	dns_names      text[]  NOT NULL,
	federates_with text[]  NOT NULL,
	admin          boolean NOT NULL,
	downstream     boolean NOT NULL,
	hint           text    NOT NULL,
	revision       bigint  NOT NULL,
	created_at     bigint  NOT NULL,
	UNIQUE (spiffe_id, parent_id, selectors_key)
);
CREATE INDEX entries_revision ON entries (revision);

-- One row per change, for catch-up by revision. created_at (the database's
-- clock) drives pruning.
CREATE TABLE entry_events (
	revision   bigint      NOT NULL PRIMARY KEY,
	entry_id   text        NOT NULL,
	deleted    boolean     NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX entry_events_created_at ON entry_events (created_at);

-- Events with revision <= this value may have been pruned.
CREATE TABLE entry_events_pruned (
	id       integer NOT NULL PRIMARY KEY CHECK (id = 1),
	revision bigint  NOT NULL CHECK (revision >= 0)
);
INSERT INTO entry_events_pruned (id, revision) VALUES (1, 0);

-- Every created entry gets its create event in the same statement, so an
-- entry can never exist without one (until the event is pruned).
CREATE FUNCTION hallmark_entries_create_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO entry_events (revision, entry_id, deleted)
		SELECT n.revision, n.id, false FROM new_entries n;
	RETURN NULL;
END $$;
CREATE TRIGGER entries_create_events AFTER INSERT ON entries
	REFERENCING NEW TABLE AS new_entries
	FOR EACH STATEMENT EXECUTE FUNCTION hallmark_entries_create_events();

-- The store-wide revision counter: one row. Every entry change locks it
-- first, so changes from all servers commit one at a time in revision
-- order and revisions have no gaps.
CREATE TABLE revision (
	id    integer NOT NULL PRIMARY KEY CHECK (id = 1),
	value bigint  NOT NULL CHECK (value >= 0)
);
INSERT INTO revision (id, value) VALUES (1, 0);

CREATE TABLE agents (
	id               text    NOT NULL PRIMARY KEY,
	attestation_type text    NOT NULL,
	selectors        json    NOT NULL, -- [{"type","value"}], kept verbatim
	serial_number    text    NOT NULL,
	expires_at       bigint,           -- NULL for the zero time
	can_reattest     boolean NOT NULL,
	created_at       bigint  NOT NULL,
	updated_at       bigint  NOT NULL
);

-- Join tokens are stored as SHA-256 digests: a copy of the database does
-- not hand out usable tokens.
CREATE TABLE join_tokens (
	token_hash bytea  NOT NULL PRIMARY KEY CHECK (length(token_hash) = 32),
	expires_at bigint NOT NULL
);
CREATE INDEX join_tokens_expires_at ON join_tokens (expires_at);

CREATE TABLE kv (
	key   text  NOT NULL PRIMARY KEY,
	value bytea NOT NULL
);
