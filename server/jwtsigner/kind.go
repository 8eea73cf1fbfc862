package jwtsigner

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/server/authority"
)

// StateFileName is the file in Config.Dir that holds every key (private
// keys included) once the signer has rotated or shares its state; mode
// 0600. Until then a signer keeps just KeyFileName, the layout of earlier
// versions, which New still reads.
const StateFileName = "jwt-state.json"

// SharedStateKey is the KVStore key of the shared key state.
const SharedStateKey = "jwt/keys"

// MaxStateSize bounds the state document: a handful of keys take a few
// KiB, sixteen RSA-4096 keys about 60 KiB.
const MaxStateSize = 256 << 10

// KVStore is where servers sharing one database keep the key state;
// server/datastore's KV satisfies it. The signer writes the shared state
// only through SwapKV (compare-and-swap), so that no server overwrites
// what another wrote since it last read (see authority.KVStore).
type KVStore = authority.KVStore

// files handles the signer's directory.
var files = authority.Files{Prefix: "jwtsigner"}

// spec is what the rotation engine needs to know about JWT signing keys:
// their words, their state document (LayoutKeys) and its bounds. A key
// that expired before its successor took over is pruned at once: no token
// it signed is still valid.
var spec = &authority.Spec{
	Prefix: "jwtsigner", Noun: "key", Plural: "keys", IDPhrase: "a key ID", IDAttr: "key_id",
	ErrUnknown: ErrUnknownKey, ValidID: validKeyID,
	Layout: authority.LayoutKeys, StateFileName: StateFileName, SharedKey: SharedStateKey,
	Superseded:        []string{KeyFileName},
	MaxStateSize:      MaxStateSize,
	MaxEntries:        16,
	MaxRevoked:        64,
	DropExpiredActive: true,
	Messages: authority.Messages{
		RunFailed:           "JWT key rotation step failed; will retry",
		SwapLost:            "Another server changed the shared JWT key state first; adopting it and redoing the step",
		LateActivation:      "Active JWT key expired before its successor was published long enough; activating the successor now (relying parties that lack it will reject new tokens until they refresh)",
		Pruned:              "Pruned expired JWT signing keys",
		Prepared:            "Prepared next JWT signing key; published in the JWT bundle",
		Activated:           "Activated JWT signing key",
		Blocked:             "No successor JWT signing key can be made",
		SharedMissing:       "Shared JWT key state is missing; writing this server's",
		SharedUnreadable:    "Shared JWT key state unreadable; starting from the local copy",
		Adopted:             "Adopted the shared JWT key state",
		KeptSigned:          "Keeping a JWT signing key that signed tokens but is missing from the shared state",
		Replaced:            "Active JWT signing key missing from the state; replaced at once",
		PreparedReplaced:    "Prepared JWT signing key replaced by an operator; it never signed",
		PreparedByOperator:  "Prepared next JWT signing key at an operator's request; published in the JWT bundle",
		ActivatedByOperator: "Activated JWT signing key at an operator's request",
		Tainted:             "JWT signing key tainted by an operator; tokens it signed should be replaced",
		Revoked:             "JWT signing key revoked by an operator; removed from the JWT bundle",
		RevokeUntainted:     "it is not tainted; taint it first",
	},
}

// key is one signing key, the key kind of the rotation engine
// (server/authority). Its fields never change after publication.
type key struct {
	id     string
	alg    jose.SignatureAlgorithm
	signer crypto.Signer
	jose   jose.Signer

	notBefore, notAfter time.Time // its lifetime
}

// entry is a key and its history on this server (published, activated,
// tainted).
type entry = authority.Entry[*key]

func (k *key) ID() string           { return k.id }
func (k *key) NotBefore() time.Time { return k.notBefore }
func (k *key) NotAfter() time.Time  { return k.notAfter }

// entryDoc is a key in the state document.
type entryDoc struct {
	authority.EntryHead
	Key       string    `json:"key"` // PKCS#8 PEM
	CreatedAt time.Time `json:"created_at"`
	NotAfter  time.Time `json:"not_after"`
	authority.EntryTail
}

// kind makes, lays out and publishes signing keys for the engine, of the
// configured algorithm and lifetime.
type kind struct {
	alg    string
	keyTTL time.Duration
	dir    string
}

// Mint creates a new key of the configured algorithm valid from now for
// KeyTTL.
func (c *kind) Mint(now time.Time) (*key, error) {
	sk, err := generate(c.alg)
	if err != nil {
		return nil, fmt.Errorf("jwtsigner: generate key: %w", err)
	}
	k, err := newKey(sk)
	if err != nil {
		return nil, fmt.Errorf("jwtsigner: %w", err)
	}
	k.notBefore, k.notAfter = now, now.Add(c.keyTTL)
	return k, nil
}

func (c *kind) EncodeEntry(k *key, head authority.EntryHead, tail authority.EntryTail) (entryDoc, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.signer)
	if err != nil {
		return entryDoc{}, fmt.Errorf("marshal key: %w", err)
	}
	return entryDoc{
		EntryHead: head,
		Key:       string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		CreatedAt: k.notBefore.UTC(),
		NotAfter:  k.notAfter.UTC(),
		EntryTail: tail,
	}, nil
}

// DecodeEntry parses an untrusted key: it must parse, be of a type the
// signer uses, and have a lifetime.
func (c *kind) DecodeEntry(i int, d entryDoc) (*key, bool, error) {
	sk, err := ParseKeyPEM([]byte(d.Key))
	if err != nil {
		return nil, false, fmt.Errorf("key %d: %w", i, err)
	}
	k, err := newKey(sk)
	if err != nil {
		return nil, false, fmt.Errorf("key %d: %w", i, err)
	}
	if d.CreatedAt.IsZero() || !d.NotAfter.After(d.CreatedAt) {
		return nil, false, fmt.Errorf("key %d (%s): not_after %s is not after created_at %s", i, k.id,
			d.NotAfter.Format(time.RFC3339), d.CreatedAt.Format(time.RFC3339))
	}
	k.notBefore, k.notAfter = d.CreatedAt, d.NotAfter
	return k, false, nil
}

// Publish returns the public keys by key ID — every key held, whose
// tokens may still be valid — and a digest of the keys and their roles
// and taints, so that Changed fires at every step.
func (c *kind) Publish(active, next *entry, old []*entry, _ time.Time) (map[string]crypto.PublicKey, string) {
	pub := map[string]crypto.PublicKey{active.ID(): active.Key.signer.Public()}
	roles := []string{"active:" + active.ID()}
	if next != nil {
		pub[next.ID()] = next.Key.signer.Public()
		roles = append(roles, "next:"+next.ID())
	}
	for _, e := range old {
		pub[e.ID()] = e.Key.signer.Public()
		roles = append(roles, "old:"+e.ID())
		if e.Tainted {
			roles = append(roles, "tainted:"+e.ID())
		}
	}
	slices.Sort(roles)
	return pub, strings.Join(roles, ",")
}

func (c *kind) Describe(e *entry) []any {
	return []any{"algorithm", e.Key.alg, "not_after", e.Key.notAfter}
}

// LoadSingle reads the single key file of earlier versions. The key counts
// as created at its file's modification time, but no earlier than half a
// KeyTTL ago: an old key is then replaced on the normal schedule rather
// than dropped at once with tokens still in flight.
func (c *kind) LoadSingle(now time.Time) (*entry, error) {
	sk, mtime, err := loadKeyFile(c.dir)
	switch {
	case errors.Is(err, errNoKey):
		return nil, nil
	case err != nil:
		return nil, err
	}
	k, err := newKey(sk)
	if err != nil {
		return nil, fmt.Errorf("jwtsigner: %w", err)
	}
	created := mtime
	if floor := now.Add(-c.keyTTL / 2); created.Before(floor) {
		created = floor
	}
	if created.After(now) {
		created = now
	}
	k.notBefore, k.notAfter = created, created.Add(c.keyTTL)
	return &entry{Key: k, PublishedAt: created, ActivatedAt: created}, nil
}

// SaveSingle writes the first key in the single-key layout.
func (c *kind) SaveSingle(k *key) (bool, error) {
	return true, saveKeyFile(c.dir, k.signer)
}

// DecodeState parses an untrusted state document (the local file or the
// shared KV value) for trust domain td and returns the number of keys it
// holds. Every key must parse, the trust domain must match, and there must
// be exactly one active key and at most one next key. It is exported for
// fuzzing and diagnostics.
func DecodeState(data []byte, td spiffeid.TrustDomain) (int, error) {
	n, err := authority.DecodeState(spec, &kind{}, td, data)
	if err != nil {
		return 0, fmt.Errorf("jwtsigner: %w", err)
	}
	return n, nil
}
