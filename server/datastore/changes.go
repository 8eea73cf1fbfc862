package datastore

import (
	"context"
	"errors"
)

// ErrEventsPruned is returned (wrapped) by EntryEventsSince of a backend
// that prunes old events when the caller asks for changes older than it
// still keeps: the caller fell too far behind and must reload everything
// with ListEntries.
var ErrEventsPruned = errors.New("datastore: entry events before this revision were pruned")

// ChangeNotifier is an optional power of a backend shared by several servers.
type ChangeNotifier interface {
	// WatchEntryChanges calls fn with a revision whenever another (or this) server committed entry changes, and with 0 after
	// (re)connecting, meaning "you may have missed changes: catch up". It returns when ctx is done.
	WatchEntryChanges(ctx context.Context, fn func(rev int64)) error
}

// EvictionNotifier is an optional power of a backend shared by several
// servers: it reports agents evicted or banned by any of them, so that
// every server can end the agent's streams at once rather than when its
// certificate expires.
type EvictionNotifier interface {
	// WatchAgentEvictions calls fn with the ID of each agent evicted or
	// banned (by this or another server), and with "" after each (re)connection,
	// meaning "you may have missed evictions". It returns when ctx is done.
	WatchAgentEvictions(ctx context.Context, fn func(agentID string)) error
}

// KVNotifier is an optional power of a backend shared by several servers:
// it reports writes of KV keys, so that state the servers share there (the
// CA and JWT key state, federation relationships, static bundles) reaches
// every server at once rather than at its next poll.
type KVNotifier interface {
	// WatchKV calls fn with the key of each committed PutKV and successful
	// SwapKV (by this or another server), and with "" after each
	// (re)connection and wherever the key cannot be told, meaning "any key
	// may have changed: re-read what you follow". It returns when ctx is
	// done.
	WatchKV(ctx context.Context, fn func(key string)) error
}
