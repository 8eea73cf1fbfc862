package jwtsigner

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/hallmarkid/hallmark/server/authority"
)

// KeyFileName is the single key file of a signer that has not rotated yet
// (and of versions without rotation): a PKCS#8 "PRIVATE KEY" PEM block,
// mode 0600. The first rotation replaces it with StateFileName.
const KeyFileName = "jwt-key.pem"

const maxFileSize = 64 << 10 // generous for a PEM RSA-4096 key

var errNoKey = errors.New("jwtsigner: no persisted key")

// loadKeyFile reads the key of the single-key layout and its modification
// time. It returns errNoKey when there is none and never modifies the
// directory.
func loadKeyFile(dir string) (crypto.Signer, time.Time, error) {
	path := filepath.Join(dir, KeyFileName)
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, time.Time{}, errNoKey
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("jwtsigner: key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, time.Time{}, fmt.Errorf("jwtsigner: key file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, time.Time{}, fmt.Errorf("jwtsigner: key file %s has mode %#o; want 0600 (no group or other access)", path, perm)
	}
	data, err := files.ReadBounded(path, maxFileSize)
	if err != nil {
		return nil, time.Time{}, err
	}
	sk, err := ParseKeyPEM(data)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("jwtsigner: key file %s: %w", path, err)
	}
	return sk, fi.ModTime(), nil
}

// ParseKeyPEM parses a key file's contents: exactly one unencrypted PKCS#8
// "PRIVATE KEY" block holding a key the signer can use.
func ParseKeyPEM(data []byte) (crypto.Signer, error) {
	block, rest := pem.Decode(data)
	switch {
	case block == nil:
		return nil, errors.New("no PEM block found")
	case block.Type != "PRIVATE KEY":
		return nil, fmt.Errorf("PEM block is %q, want \"PRIVATE KEY\"", block.Type)
	case len(block.Headers) != 0:
		return nil, errors.New("PEM block has headers (encrypted keys are not supported)")
	case len(bytes.TrimSpace(rest)) != 0:
		return nil, errors.New("unexpected data after the PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse PKCS#8: %w", err)
	}
	sk, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key of type %T cannot sign", k)
	}
	if _, err := algorithmOf(sk); err != nil {
		return nil, err
	}
	return sk, nil
}

// saveKeyFile writes a new key in the single-key layout: a temporary file
// with mode 0600, synced, then linked into place so an existing key is
// never replaced, then the directory is synced.
func saveKeyFile(dir string, sk crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(sk)
	if err != nil {
		return fmt.Errorf("jwtsigner: marshal key: %w", err)
	}
	tmp, err := files.WriteTemp(dir, KeyFileName, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), authority.PrivateMode)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	// Link fails if the name exists: a key that appeared meanwhile (another
	// process) is kept, never overwritten.
	if err := os.Link(tmp, filepath.Join(dir, KeyFileName)); err != nil {
		return fmt.Errorf("jwtsigner: install key: %w", err)
	}
	return files.SyncDir(dir)
}
