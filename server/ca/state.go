package ca

import (
	"context"
	"crypto"
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

// StateFileName is the file in Config.Dir that holds every authority (keys
// included) once the CA has rotated or shares its state; mode 0600. Until
// then a CA made by an earlier version is just KeyFileName + CertFileName,
// which New still reads.
const StateFileName = "ca-state.json"

// SharedStateKey is the KVStore key of the shared authority state.
const SharedStateKey = "ca/x509_authorities"

// stateFormat is the version of the persisted JSON layout.
const stateFormat = 1

// maxStateSize bounds the state document (a handful of keys and
// certificates take a few KiB; RSA-4096 upstream chains a few more).
const maxStateSize = 1 << 20

// maxAuthorities bounds how many authorities a state may hold.
const maxAuthorities = 16

// maxRevoked bounds how many revoked authorities a state may list.
const maxRevoked = 64

// Authority roles in the persisted state.
const (
	statusActive = "active"
	statusNext   = "next"
	statusOld    = "old"
)

// KVStore is where servers sharing one database keep the authority state;
// server/datastore's KV satisfies it. GetKV returns an error matching
// Config.SharedNotFound (errors.Is) when the key is absent. SwapKV stores
// value only if the stored value is still old (absent when old is nil) and
// reports whether it did: the CA writes the shared state only through it,
// so that no server overwrites what another wrote since it last read.
type KVStore interface {
	GetKV(ctx context.Context, key string) ([]byte, error)
	SwapKV(ctx context.Context, key string, old, value []byte) (swapped bool, err error)
}

// stateDoc is the persisted authority state, in the local file and in the
// shared KV alike.
type stateDoc struct {
	Format         int            `json:"format"`
	TrustDomain    string         `json:"trust_domain"`
	Version        uint64         `json:"version"`
	BundleSequence uint64         `json:"bundle_sequence"`
	BundleDigest   string         `json:"bundle_digest"`
	Authorities    []authorityDoc `json:"authorities"`
	// Revoked lists authorities an operator removed, until they expire,
	// so that no server merges them back.
	Revoked []revokedDoc `json:"revoked,omitempty"`
}

type revokedDoc struct {
	ID       string    `json:"id"`
	NotAfter time.Time `json:"not_after"`
}

type authorityDoc struct {
	Status      string    `json:"status"`
	Key         string    `json:"key"`  // PKCS#8 PEM
	Cert        string    `json:"cert"` // PEM
	PublishedAt time.Time `json:"published_at"`
	ActivatedAt time.Time `json:"activated_at,omitzero"`
	Tainted     bool      `json:"tainted,omitempty"`
}

// encodeState serialises s.
func encodeState(td spiffeid.TrustDomain, s *snapshot) ([]byte, error) {
	doc := stateDoc{Format: stateFormat, TrustDomain: td.Name(), Version: s.version, BundleSequence: s.seq, BundleDigest: s.digest}
	add := func(a *authority, status string) error {
		der, err := x509.MarshalPKCS8PrivateKey(a.signer)
		if err != nil {
			return fmt.Errorf("ca: marshal key: %w", err)
		}
		doc.Authorities = append(doc.Authorities, authorityDoc{
			Status:      status,
			Key:         string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
			Cert:        string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.cert.Raw})),
			PublishedAt: a.publishedAt.UTC(),
			ActivatedAt: a.activatedAt.UTC(),
			Tainted:     a.tainted,
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
	for _, a := range s.old {
		if err := add(a, statusOld); err != nil {
			return nil, err
		}
	}
	for _, id := range slices.Sorted(maps.Keys(s.revoked)) {
		doc.Revoked = append(doc.Revoked, revokedDoc{ID: id, NotAfter: s.revoked[id].UTC()})
	}
	return json.MarshalIndent(doc, "", "  ")
}

// decodedState is a parsed, validated state document.
type decodedState struct {
	version, seq uint64
	digest       string
	entries      []stateEntry
	revoked      map[string]time.Time
}

// stateEntry is one authority and its persisted role. foreign marks an
// authority issued by neither itself nor the configured upstream (the
// configuration changed since it was made).
type stateEntry struct {
	a       *authority
	status  string
	foreign bool
}

// decodeState parses an untrusted state document. Every key and
// certificate must parse and match, the trust domain must be td, and there
// must be exactly one active authority and at most one next.
func decodeState(data []byte, td spiffeid.TrustDomain, up *upstream) (*decodedState, error) {
	if len(data) > maxStateSize {
		return nil, fmt.Errorf("state is %d bytes, more than %d", len(data), maxStateSize)
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
	if len(doc.Authorities) == 0 || len(doc.Authorities) > maxAuthorities {
		return nil, fmt.Errorf("state holds %d authorities, want 1 to %d", len(doc.Authorities), maxAuthorities)
	}
	if len(doc.Revoked) > maxRevoked {
		return nil, fmt.Errorf("state lists %d revoked authorities, at most %d", len(doc.Revoked), maxRevoked)
	}
	ds := &decodedState{version: doc.Version, seq: doc.BundleSequence, digest: doc.BundleDigest}
	for i, r := range doc.Revoked {
		if !validAuthorityID(r.ID) {
			return nil, fmt.Errorf("revoked %d: malformed authority ID %q", i, r.ID)
		}
		if _, dup := ds.revoked[r.ID]; dup {
			return nil, fmt.Errorf("revoked %d: %s appears twice", i, r.ID)
		}
		if ds.revoked == nil {
			ds.revoked = map[string]time.Time{}
		}
		ds.revoked[r.ID] = r.NotAfter
	}
	seen := map[string]bool{}
	var active, next int
	for i, ad := range doc.Authorities {
		switch ad.Status {
		case statusActive:
			active++
		case statusNext:
			next++
		case statusOld:
		default:
			return nil, fmt.Errorf("authority %d: unknown status %q", i, ad.Status)
		}
		signer, err := parsePKCS8PEM([]byte(ad.Key))
		if err != nil {
			return nil, fmt.Errorf("authority %d: key: %w", i, err)
		}
		certDER, err := decodeSinglePEM([]byte(ad.Cert), "CERTIFICATE")
		if err != nil {
			return nil, fmt.Errorf("authority %d: certificate: %w", i, err)
		}
		cert, err := x509.ParseCertificate(certDER)
		if err != nil {
			return nil, fmt.Errorf("authority %d: certificate: %w", i, err)
		}
		a, err := checkAuthority(signer, cert, td, up)
		foreign := errors.Is(err, errForeign)
		switch {
		case foreign:
			a = &authority{id: authorityID(cert), signer: signer, cert: cert}
		case err != nil:
			return nil, fmt.Errorf("authority %d: %w", i, err)
		}
		if seen[a.id] {
			return nil, fmt.Errorf("authority %d: %s appears twice", i, a.id)
		}
		if _, ok := ds.revoked[a.id]; ok {
			return nil, fmt.Errorf("authority %d: %s is both held and revoked", i, a.id)
		}
		if ad.Tainted && ad.Status != statusOld {
			return nil, fmt.Errorf("authority %d: %s is tainted but %s; only old authorities can be", i, a.id, ad.Status)
		}
		seen[a.id] = true
		a.publishedAt, a.activatedAt, a.tainted = ad.PublishedAt, ad.ActivatedAt, ad.Tainted
		ds.entries = append(ds.entries, stateEntry{a: a, status: ad.Status, foreign: foreign})
	}
	if active != 1 {
		return nil, fmt.Errorf("state has %d active authorities, want 1", active)
	}
	if next > 1 {
		return nil, fmt.Errorf("state has %d next authorities, want at most 1", next)
	}
	return ds, nil
}

func parsePKCS8PEM(data []byte) (crypto.Signer, error) {
	der, err := decodeSinglePEM(data, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("parse PKCS#8: %w", err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key of type %T cannot sign", k)
	}
	return signer, nil
}

// readStateFile returns the local state document, or fs.ErrNotExist.
func readStateFile(dir string) ([]byte, error) {
	path := filepath.Join(dir, StateFileName)
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("ca: state file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("ca: state file %s has mode %#o; want 0600 (no group or other access)", path, perm)
	}
	data, err := readBounded(path)
	if err != nil {
		return nil, err
	}
	return data, nil
}

// writeStateFile atomically replaces the local state document (temporary
// file, fsync, rename, fsync of the directory), then removes the files of
// the earlier single-root layout, which the state now supersedes.
func writeStateFile(dir string, data []byte) error {
	tmp, err := writeTemp(dir, StateFileName, data, keyMode)
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // no-op after the rename
	if err := os.Rename(tmp, filepath.Join(dir, StateFileName)); err != nil {
		return fmt.Errorf("ca: install state file: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	for _, name := range []string{KeyFileName, CertFileName} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("ca: remove superseded %s: %w", name, err)
		}
	}
	return nil
}
