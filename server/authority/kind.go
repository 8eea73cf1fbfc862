package authority

import (
	"log/slog"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Kind is what the engine needs to know about one kind of key. K is the
// key, D its layout in the state document, P what is published (a bundle,
// a key set).
type Kind[K Key, D, P any] interface {
	// Mint makes a new key valid from now.
	Mint(now time.Time) (K, error)
	// EncodeEntry lays out k for the state document; D embeds head first
	// and tail last, so that every kind's entries read alike.
	EncodeEntry(k K, head EntryHead, tail EntryTail) (D, error)
	// DecodeEntry parses entry i of an untrusted state document. foreign
	// reports a key that is well-formed but does not belong to the current
	// configuration (Policy.Place decides what becomes of it).
	DecodeEntry(i int, d D) (k K, foreign bool, err error)
	// Publish computes what the key set publishes at now and a digest of
	// it: a change of digest fires Changed and grows Sequence.
	Publish(active, next *Entry[K], old []*Entry[K], now time.Time) (pub P, digest string)
	// Describe returns the log attributes of a new entry, after its ID.
	Describe(e *Entry[K]) []any
}

// Policy is an optional power of a Kind whose configuration limits which
// keys it may hold or make (the CA under an upstream CA). Without it every
// decoded entry keeps its role, every key this server signed with is
// kept, and a successor can always be made.
type Policy[K Key] interface {
	// Place decides where a decoded entry goes under the current
	// configuration; status is StatusActive, StatusPrepared or StatusOld.
	Place(e *Entry[K], status string, foreign bool, now time.Time) (*Entry[K], Role)
	// Keep reports whether a key this server signed with may be merged
	// back into an adopted state.
	Keep(k K) bool
	// Blocked returns why no successor of active can be made now ("" when
	// one can), with log attributes.
	Blocked(active *Entry[K]) (reason string, attrs []any)
	// RevokeBlocked returns why e, tainted, may not be revoked ("" when it
	// may).
	RevokeBlocked(e *Entry[K]) string
}

// SingleLayout is an optional power of a Kind whose earlier versions kept
// a single key in files of their own until the first rotation.
type SingleLayout[K Key] interface {
	// LoadSingle returns the key of the single-key layout as the active
	// entry, or nil when there is none; it never modifies the directory.
	LoadSingle(now time.Time) (*Entry[K], error)
	// SaveSingle writes the first key in the single-key layout when there
	// is no shared store, and reports whether it did (false: the state
	// document is written instead).
	SaveSingle(k K) (bool, error)
}

// Layout is the shape of a state document. There are two, fixed by what
// earlier versions wrote.
type Layout int

const (
	// LayoutAuthorities keeps entries under "authorities", revocations by
	// "id", and the published sequence and digest (the X.509 CA's).
	LayoutAuthorities Layout = iota
	// LayoutKeys keeps entries under "keys" and revocations by "key_id"
	// (the JWT signer's).
	LayoutKeys
)

// Spec is what a kind says and how it is stored. It must not change after
// New.
type Spec struct {
	// Prefix starts every error: the kind's package name.
	Prefix string
	// Noun and Plural name an entry in errors ("authority", "authorities");
	// IDPhrase its ID ("an authority ID"); IDAttr is the log attribute of
	// an ID ("id", "key_id").
	Noun, Plural, IDPhrase, IDAttr string
	// ErrUnknown is wrapped by the errors of actions on unknown IDs.
	ErrUnknown error
	// ValidID reports whether a revoked ID in a state document is
	// well-formed.
	ValidID func(string) bool

	Layout Layout
	// StateFileName is the state document in Config.Dir; SharedKey its key
	// in Config.Shared. Superseded are files of the single-key layout,
	// removed once the state document is written.
	StateFileName, SharedKey string
	Superseded               []string
	// Bounds of a state document.
	MaxStateSize, MaxEntries, MaxRevoked int
	// DropExpiredActive prunes an active key that expired before its
	// successor took over, instead of keeping it as old until the next
	// step.
	DropExpiredActive bool

	Messages Messages
}

// Messages are the log messages (and one refusal) of a kind.
type Messages struct {
	RunFailed        string // a Run step failed
	SwapLost         string // another server wrote the shared state first
	LateActivation   string // the successor activates before its time
	Pruned           string
	Prepared         string
	Activated        string
	Blocked          string // no successor can be made (Policy.Blocked)
	SharedMissing    string
	SharedUnreadable string
	Adopted          string
	KeptSigned       string // a key that signed is merged back
	Replaced         string // the active key is replaced at once (Policy.Place dropped it)

	PreparedReplaced, PreparedByOperator, ActivatedByOperator, Tainted, Revoked string
	// RevokeUntainted is the refusal to revoke an untainted key.
	RevokeUntainted string
}

// Config is one engine's configuration.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	// Dir holds the state document; the kind has created and checked it.
	Dir string
	// Clock returns the current time. Required.
	Clock func() time.Time
	// Log receives rotation events and warnings. Required.
	Log *slog.Logger
	// Shared, when set, is where servers sharing one database agree;
	// SharedNotFound is the error GetKV returns (errors.Is) for an absent
	// key.
	Shared         KVStore
	SharedNotFound error
}

// String names the layout by the field its entries are kept under.
func (l Layout) String() string {
	if l == LayoutAuthorities {
		return "authorities"
	}
	return "keys"
}
