// Package datastore declares the server's persistence interfaces. Backends
// (sqlite, and later postgres) live in subpackages and must satisfy the
// shared conformance suite in datastoretest.
//
// It must not import server wiring, attestors or the CA.
package datastore

import (
	"context"
	"errors"
	"time"

	"github.com/hallmarkid/hallmark/registration"
)

// Sentinel errors callers branch on.
var (
	ErrNotFound      = errors.New("datastore: not found")
	ErrAlreadyExists = errors.New("datastore: already exists")
	// ErrBanned: the agent's record is kept, marked banned, and may not
	// change until an operator deletes it (which lifts the ban).
	ErrBanned = errors.New("datastore: agent is banned")
)

// CreateResult is the outcome of one entry in a bulk create.
type CreateResult struct {
	Entry registration.Entry // with ID, Revision and CreatedAt set on success
	Err   error              // ErrAlreadyExists for a similar entry (same SPIFFE ID, parent and selector set)
}

// EntryEvent records one change for catch-up by revision.
type EntryEvent struct {
	Revision int64
	EntryID  string
	Deleted  bool
}

// Entries stores registration entries. Every change bumps a store-wide
// revision; an entry's Revision is the revision of its last change.
type Entries interface {
	// CreateEntries inserts entries in one transaction. An entry with an
	// empty ID gets a fresh random ID. Duplicates are reported per entry
	// and skipped; any other failure rolls back the whole batch.
	CreateEntries(ctx context.Context, entries []registration.Entry) ([]CreateResult, error)
	// UpdateEntry replaces every field of the entry with ID e.ID except ID
	// and CreatedAt (e's Revision and CreatedAt are ignored) and returns it
	// as stored. The change gets a new revision and an event exactly like
	// a create (Deleted false). ErrNotFound if no entry has that ID;
	// ErrAlreadyExists if another entry has the same SPIFFE ID, parent and
	// selector set, the uniqueness rule of CreateEntries.
	UpdateEntry(ctx context.Context, e registration.Entry) (registration.Entry, error)
	// DeleteEntry removes an entry and returns it; ErrNotFound if absent.
	DeleteEntry(ctx context.Context, id string) (registration.Entry, error)
	// ListEntries returns every entry and the revision they are current to.
	ListEntries(ctx context.Context) ([]registration.Entry, int64, error)
	// EntryEventsSince returns changes with revision > rev, oldest first.
	EntryEventsSince(ctx context.Context, rev int64) ([]EntryEvent, error)
	// GetEntry returns one entry; ErrNotFound if absent.
	GetEntry(ctx context.Context, id string) (registration.Entry, error)
}

// Agent is an attested node.
type Agent struct {
	ID              string // SPIFFE ID
	AttestationType string
	Selectors       []registration.Selector
	// SerialNumber is the serial of the agent SVID the agent is known to
	// hold (it used it, or it was issued by a fresh attestation).
	SerialNumber string
	// NewSerialNumber is the serial of the SVID the last renewal issued,
	// until the agent first uses it (it then becomes SerialNumber, and the
	// older SVID is dead); "" when none is pending. Until then both are
	// the agent's, so that a renewal whose answer was lost is not fatal.
	NewSerialNumber string
	ExpiresAt       time.Time
	CanReattest     bool
	// Banned is set by BanAgent only: CreateAgent and UpdateAgent ignore it.
	Banned    bool
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Agents stores attested agents.
type Agents interface {
	// CreateAgent inserts a new agent; ErrAlreadyExists if the ID is taken
	// (trust-on-first-use attestors rely on this being atomic), banned or
	// not.
	CreateAgent(ctx context.Context, a Agent) error
	// UpdateAgent replaces an existing agent; ErrNotFound if absent,
	// ErrBanned (and no change) if it is banned.
	UpdateAgent(ctx context.Context, a Agent) error
	GetAgent(ctx context.Context, id string) (Agent, error)
	ListAgents(ctx context.Context) ([]Agent, error)
	// DeleteAgent evicts an agent, banned or not (deleting a banned agent
	// lifts the ban); ErrNotFound if absent.
	DeleteAgent(ctx context.Context, id string) error
	// PromoteAgentSerial records the agent's first use of its pending SVID:
	// if the agent's NewSerialNumber is serial, it becomes its
	// SerialNumber and NewSerialNumber is cleared, atomically. ErrNotFound
	// if the agent is absent or serial is not its pending serial (any
	// more), ErrBanned if it is banned.
	PromoteAgentSerial(ctx context.Context, id, serial string) error
	// BanAgent marks an agent banned and keeps its record, so that it can
	// neither renew nor attest again until DeleteAgent; ErrNotFound if
	// absent. Banning a banned agent succeeds. Watchers of an
	// EvictionNotifier hear of a ban as of an eviction.
	BanAgent(ctx context.Context, id string) error
}

// JoinToken is a single-use attestation secret.
type JoinToken struct {
	Token     string
	ExpiresAt time.Time
}

// JoinTokens stores join tokens.
type JoinTokens interface {
	CreateJoinToken(ctx context.Context, t JoinToken) error
	// ConsumeJoinToken atomically removes the token and returns it. Unknown
	// and expired (ExpiresAt <= now) tokens both give ErrNotFound; an
	// expired token is removed too. Of any number of concurrent calls with
	// one token, exactly one succeeds.
	ConsumeJoinToken(ctx context.Context, token string, now time.Time) (JoinToken, error)
	// PruneJoinTokens removes tokens that expired before t.
	PruneJoinTokens(ctx context.Context, t time.Time) error
}

// KV stores small server state blobs (CA rotation state and the like).
type KV interface {
	GetKV(ctx context.Context, key string) ([]byte, error) // ErrNotFound if absent
	PutKV(ctx context.Context, key string, value []byte) error
	// SwapKV stores value under key only if the stored value is old
	// (byte for byte), or, with old == nil, only if key is absent; it
	// reports whether it did. Of any number of concurrent swaps from the
	// same old value, exactly one succeeds. Servers sharing one database
	// write shared state through it, so that none overwrites what another
	// wrote since it last read.
	SwapKV(ctx context.Context, key string, old, value []byte) (swapped bool, err error)
}

// OpObserver is implemented by backends that time their operations: fn
// receives each exported operation's name in snake_case ("list_entries",
// "create_agent", ...) and its duration, from any goroutine. The server
// passes the recorder of hallmark_datastore_op_duration_seconds.
type OpObserver interface {
	ObserveOps(fn func(op string, took time.Duration))
}

// Store is everything a backend provides.
type Store interface {
	Entries
	Agents
	JoinTokens
	KV
	// Ping reports whether the backend is usable.
	Ping(ctx context.Context) error
	Close() error
}
