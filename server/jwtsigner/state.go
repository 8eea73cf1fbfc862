package jwtsigner

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// StateFileName is the file in Config.Dir that holds every key (private
// keys included) once the signer has rotated or shares its state; mode
// 0600. Until then a signer keeps just KeyFileName, the layout of earlier
// versions, which New still reads.
const StateFileName = "jwt-state.json"

// SharedStateKey is the KVStore key of the shared key state.
const SharedStateKey = "jwt/keys"

// stateFormat is the version of the persisted JSON layout.
const stateFormat = 1

// MaxStateSize bounds the state document: a handful of keys take a few
// KiB, sixteen RSA-4096 keys about 60 KiB.
const MaxStateSize = 256 << 10

// maxKeys bounds how many keys a state may hold.
const maxKeys = 16

// maxRevoked bounds how many revoked keys a state may list.
const maxRevoked = 64

// Key roles in the persisted state.
const (
	statusActive = "active"
	statusNext   = "next"
	statusOld    = "old"
)

// KVStore is where servers sharing one database keep the key state;
// server/datastore's KV satisfies it. GetKV returns an error matching
// Config.SharedNotFound (errors.Is) when the key is absent. SwapKV stores
// value only if the stored value is still old (absent when old is nil) and
// reports whether it did: the signer writes the shared state only through
// it, so that no server overwrites what another wrote since it last read.
type KVStore interface {
	GetKV(ctx context.Context, key string) ([]byte, error)
	SwapKV(ctx context.Context, key string, old, value []byte) (swapped bool, err error)
}

// stateDoc is the persisted key state, in the local file and in the
// shared KV alike.
type stateDoc struct {
	Format      int      `json:"format"`
	TrustDomain string   `json:"trust_domain"`
	Version     uint64   `json:"version"`
	Keys        []keyDoc `json:"keys"`
	// Revoked lists keys an operator removed, until they expire, so that
	// no server merges them back.
	Revoked []revokedDoc `json:"revoked,omitempty"`
}

type revokedDoc struct {
	KeyID    string    `json:"key_id"`
	NotAfter time.Time `json:"not_after"`
}

type keyDoc struct {
	Status      string    `json:"status"`
	Key         string    `json:"key"` // PKCS#8 PEM
	CreatedAt   time.Time `json:"created_at"`
	NotAfter    time.Time `json:"not_after"`
	PublishedAt time.Time `json:"published_at"`
	ActivatedAt time.Time `json:"activated_at,omitzero"`
	Tainted     bool      `json:"tainted,omitempty"`
}

// encodeState serialises s.
func encodeState(td spiffeid.TrustDomain, s *snapshot) ([]byte, error) {
	doc := stateDoc{Format: stateFormat, TrustDomain: td.Name(), Version: s.version}
	add := func(k *key, status string) error {
		der, err := x509.MarshalPKCS8PrivateKey(k.signer)
		if err != nil {
			return fmt.Errorf("jwtsigner: marshal key: %w", err)
		}
		doc.Keys = append(doc.Keys, keyDoc{
			Status:      status,
			Key:         string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
			CreatedAt:   k.notBefore.UTC(),
			NotAfter:    k.notAfter.UTC(),
			PublishedAt: k.publishedAt.UTC(),
			ActivatedAt: k.activatedAt.UTC(),
			Tainted:     k.tainted,
		})
		return nil
	}
	if err := add(s.active, statusActive); err != nil {
		return nil, err
	}
	if s.next != nil {
		if err := add(s.next, statusNext); err != nil {
			return nil, err
		}
	}
	for _, k := range s.old {
		if err := add(k, statusOld); err != nil {
			return nil, err
		}
	}
	for _, id := range slices.Sorted(maps.Keys(s.revoked)) {
		doc.Revoked = append(doc.Revoked, revokedDoc{KeyID: id, NotAfter: s.revoked[id].UTC()})
	}
	return json.MarshalIndent(doc, "", "  ")
}

// decodedState is a parsed, validated state document.
type decodedState struct {
	version uint64
	entries []stateEntry
	revoked map[string]time.Time
}

type stateEntry struct {
	k      *key
	status string
}

// DecodeState parses an untrusted state document (the local file or the
// shared KV value) for trust domain td and returns the number of keys it
// holds. Every key must parse, the trust domain must match, and there must
// be exactly one active key and at most one next key. It is exported for
// fuzzing and diagnostics.
func DecodeState(data []byte, td spiffeid.TrustDomain) (int, error) {
	ds, err := decodeState(data, td)
	if err != nil {
		return 0, fmt.Errorf("jwtsigner: %w", err)
	}
	return len(ds.entries), nil
}

func decodeState(data []byte, td spiffeid.TrustDomain) (*decodedState, error) {
	if len(data) > MaxStateSize {
		return nil, fmt.Errorf("state is %d bytes, more than %d", len(data), MaxStateSize)
	}
	var doc stateDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("malformed state: %w", err)
	}
	if doc.Format != stateFormat {
		return nil, fmt.Errorf("state format %d is not supported (want %d)", doc.Format, stateFormat)
	}
	if doc.TrustDomain != td.Name() {
		return nil, fmt.Errorf("state is for trust domain %q, but the configured trust domain is %q", doc.TrustDomain, td.Name())
	}
	if len(doc.Keys) == 0 || len(doc.Keys) > maxKeys {
		return nil, fmt.Errorf("state holds %d keys, want 1 to %d", len(doc.Keys), maxKeys)
	}
	if len(doc.Revoked) > maxRevoked {
		return nil, fmt.Errorf("state lists %d revoked keys, at most %d", len(doc.Revoked), maxRevoked)
	}
	ds := &decodedState{version: doc.Version}
	for i, r := range doc.Revoked {
		if !validKeyID(r.KeyID) {
			return nil, fmt.Errorf("revoked %d: malformed key ID %q", i, r.KeyID)
		}
		if _, dup := ds.revoked[r.KeyID]; dup {
			return nil, fmt.Errorf("revoked %d: %s appears twice", i, r.KeyID)
		}
		if ds.revoked == nil {
			ds.revoked = map[string]time.Time{}
		}
		ds.revoked[r.KeyID] = r.NotAfter
	}
	seen := map[string]bool{}
	var active, next int
	for i, kd := range doc.Keys {
		switch kd.Status {
		case statusActive:
			active++
		case statusNext:
			next++
		case statusOld:
		default:
			return nil, fmt.Errorf("key %d: unknown status %q", i, kd.Status)
		}
		sk, err := ParseKeyPEM([]byte(kd.Key))
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		k, err := newKey(sk)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		if kd.CreatedAt.IsZero() || !kd.NotAfter.After(kd.CreatedAt) {
			return nil, fmt.Errorf("key %d (%s): not_after %s is not after created_at %s", i, k.id,
				kd.NotAfter.Format(time.RFC3339), kd.CreatedAt.Format(time.RFC3339))
		}
		if seen[k.id] {
			return nil, fmt.Errorf("key %d: %s appears twice", i, k.id)
		}
		if _, ok := ds.revoked[k.id]; ok {
			return nil, fmt.Errorf("key %d: %s is both held and revoked", i, k.id)
		}
		if kd.Tainted && kd.Status != statusOld {
			return nil, fmt.Errorf("key %d: %s is tainted but %s; only old keys can be", i, k.id, kd.Status)
		}
		seen[k.id] = true
		k.notBefore, k.notAfter, k.publishedAt, k.activatedAt = kd.CreatedAt, kd.NotAfter, kd.PublishedAt, kd.ActivatedAt
		k.tainted = kd.Tainted
		ds.entries = append(ds.entries, stateEntry{k: k, status: kd.Status})
	}
	if active != 1 {
		return nil, fmt.Errorf("state has %d active keys, want 1", active)
	}
	if next > 1 {
		return nil, fmt.Errorf("state has %d next keys, want at most 1", next)
	}
	return ds, nil
}

// readStateFile returns the local state document, or fs.ErrNotExist.
func readStateFile(dir string) ([]byte, error) {
	path := filepath.Join(dir, StateFileName)
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("jwtsigner: state file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("jwtsigner: state file %s has mode %#o; want 0600 (no group or other access)", path, perm)
	}
	return readBounded(path, MaxStateSize)
}

// writeStateFile atomically replaces the local state document (temporary
// file, fsync, rename, fsync of the directory), then removes the key file
// of the single-key layout, which the state now supersedes.
func writeStateFile(dir string, data []byte) error {
	tmp, err := writeTemp(dir, StateFileName, data)
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // no-op after the rename
	if err := os.Rename(tmp, filepath.Join(dir, StateFileName)); err != nil {
		return fmt.Errorf("jwtsigner: install state file: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(dir, KeyFileName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("jwtsigner: remove superseded %s: %w", KeyFileName, err)
	}
	return nil
}
