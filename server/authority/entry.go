package authority

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"
)

// Key is the kind-specific half of an entry: a signing key and whatever
// binds it (a CA certificate, a key ID). It must not change once
// published.
type Key interface {
	// ID names the key in the state document, the logs and the operator
	// actions.
	ID() string
	// NotBefore and NotAfter bound its lifetime.
	NotBefore() time.Time
	NotAfter() time.Time
}

// Entry is one key and its history on this server. It is immutable once
// published in a Snapshot: WithTimes and the operator actions make copies.
type Entry[K Key] struct {
	Key K
	// PublishedAt is when this server first published (or held) it.
	PublishedAt time.Time
	// ActivatedAt is when it first signed; zero if it never did.
	ActivatedAt time.Time
	// Tainted reports that an operator marked this (old) key compromised:
	// what it signed must be replaced.
	Tainted bool
}

// ID returns the key's ID.
func (e *Entry[K]) ID() string { return e.Key.ID() }

// NotAfter returns the end of the key's lifetime.
func (e *Entry[K]) NotAfter() time.Time { return e.Key.NotAfter() }

// Lifetime is the key's validity period.
func (e *Entry[K]) Lifetime() time.Duration { return e.Key.NotAfter().Sub(e.Key.NotBefore()) }

// Expired reports whether the key is no longer valid at now.
func (e *Entry[K]) Expired(now time.Time) bool { return !now.Before(e.Key.NotAfter()) }

// WithTimes returns a copy of e with the given timestamps.
func (e *Entry[K]) WithTimes(published, activated time.Time) *Entry[K] {
	c := *e
	c.PublishedAt, c.ActivatedAt = published, activated
	return &c
}

// Statuses of an entry, as the operator actions and listings name them.
const (
	StatusActive   = "active"   // signs
	StatusPrepared = "prepared" // published, not yet signing
	StatusOld      = "old"      // formerly active (or superseded), kept until it expires
)

// Role is where Policy.Place puts a persisted entry.
type Role int

// Roles of a placed entry.
const (
	RoleDrop Role = iota
	RoleActive
	RoleNext
	RoleOld
)

// ErrRefused is wrapped by the errors of operator actions that make no
// sense for the entry's status; callers branch on it with errors.Is.
var ErrRefused = errors.New("refused")

// KVStore is where servers sharing one database keep the state;
// server/datastore's KV satisfies it. GetKV returns an error matching
// Config.SharedNotFound (errors.Is) when the key is absent. SwapKV stores
// value only if the stored value is still old (absent when old is nil) and
// reports whether it did: the engine writes the shared state only through
// it, so that no server overwrites what another wrote since it last read.
type KVStore interface {
	GetKV(ctx context.Context, key string) ([]byte, error)
	SwapKV(ctx context.Context, key string, old, value []byte) (swapped bool, err error)
}

// Snapshot is the whole key set at one moment. It is immutable: every
// change builds a new one and swaps it in.
type Snapshot[K Key, P any] struct {
	version uint64      // of the persisted state this was built from
	active  *Entry[K]   // signs; never nil
	next    *Entry[K]   // prepared and published, not yet signing; may be nil
	old     []*Entry[K] // kept until they expire; newest first
	pub     P           // what the kind publishes (Kind.Publish)
	digest  string      // of pub, as Kind.Publish computes it
	seq     uint64      // grows with each change of digest
	// revoked maps the IDs of keys an operator revoked to their expiry:
	// no server may merge them back. Entries go once expired.
	revoked map[string]time.Time
}

// Active returns the entry that signs.
func (s *Snapshot[K, P]) Active() *Entry[K] { return s.active }

// Next returns the prepared entry, or nil.
func (s *Snapshot[K, P]) Next() *Entry[K] { return s.next }

// Published returns what Kind.Publish made of this key set; it must not
// be modified.
func (s *Snapshot[K, P]) Published() P { return s.pub }

// Sequence returns a number that grows whenever the published digest
// changes; it survives restarts when the layout persists it.
func (s *Snapshot[K, P]) Sequence() uint64 { return s.seq }

// All returns every entry, active first, then next, then old.
func (s *Snapshot[K, P]) All() []*Entry[K] {
	out := []*Entry[K]{s.active}
	if s.next != nil {
		out = append(out, s.next)
	}
	return append(out, s.old...)
}

// Listed is an entry and its status.
type Listed[K Key] struct {
	*Entry[K]
	Status string
}

// List returns every entry with its status: the active one, the prepared
// one if any, then old ones, newest first.
func (s *Snapshot[K, P]) List() []Listed[K] {
	out := []Listed[K]{{s.active, StatusActive}}
	if s.next != nil {
		out = append(out, Listed[K]{s.next, StatusPrepared})
	}
	for _, e := range s.old {
		out = append(out, Listed[K]{e, StatusOld})
	}
	return out
}

// find returns the entry with id, or nil.
func (s *Snapshot[K, P]) find(id string) *Entry[K] {
	for _, e := range s.All() {
		if e.ID() == id {
			return e
		}
	}
	return nil
}

// setKey identifies the key set and who holds which role, ignoring
// timestamps: two servers whose keys are equal agree.
func (s *Snapshot[K, P]) setKey() string {
	roles := []string{"active:" + s.active.ID()}
	if s.next != nil {
		roles = append(roles, "next:"+s.next.ID())
	}
	for _, e := range s.old {
		roles = append(roles, "old:"+e.ID())
	}
	for _, e := range s.All() {
		if e.Tainted {
			roles = append(roles, "tainted:"+e.ID())
		}
	}
	slices.Sort(roles)
	return strings.Join(roles, ",")
}

// liveOld returns a copy of old without the expired entries.
func liveOld[K Key](old []*Entry[K], now time.Time) []*Entry[K] {
	var out []*Entry[K]
	for _, e := range old {
		if !e.Expired(now) {
			out = append(out, e)
		}
	}
	return out
}
