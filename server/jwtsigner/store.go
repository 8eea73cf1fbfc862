package jwtsigner

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// KeyFileName is the file the signer keeps in Config.Dir: a PKCS#8
// "PRIVATE KEY" PEM block, mode 0600.
const KeyFileName = "jwt-key.pem"

const (
	dirMode     fs.FileMode = 0o700
	keyMode     fs.FileMode = 0o600
	maxFileSize             = 64 << 10 // generous for a PEM RSA-4096 key
)

var errNoKey = errors.New("jwtsigner: no persisted key")

// prepareDir creates dir with mode 0700 if missing and refuses a directory
// that group or others may write to (they could swap the key).
func prepareDir(dir string) error {
	if dir == "" {
		return errors.New("jwtsigner: Dir is required")
	}
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, dirMode); err != nil {
			return fmt.Errorf("jwtsigner: create directory: %w", err)
		}
		// MkdirAll is subject to the umask; set the mode explicitly.
		if err := os.Chmod(dir, dirMode); err != nil {
			return fmt.Errorf("jwtsigner: create directory: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("jwtsigner: directory: %w", err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("jwtsigner: %s is a symbolic link; refusing it", dir)
	case !fi.IsDir():
		return fmt.Errorf("jwtsigner: %s is not a directory", dir)
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("jwtsigner: directory %s has mode %#o; group and others must not be able to write to it", dir, fi.Mode().Perm())
	}
	return nil
}

// load reads the persisted key. It returns errNoKey when there is none and
// never modifies the directory.
func load(dir string) (crypto.Signer, error) {
	path := filepath.Join(dir, KeyFileName)
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errNoKey
	}
	if err != nil {
		return nil, fmt.Errorf("jwtsigner: key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("jwtsigner: key file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("jwtsigner: key file %s has mode %#o; want 0600 (no group or other access)", path, perm)
	}
	data, err := readBounded(path)
	if err != nil {
		return nil, err
	}
	sk, err := ParseKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("jwtsigner: key file %s: %w", path, err)
	}
	return sk, nil
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

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("jwtsigner: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("jwtsigner: read %s: %w", path, err)
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("jwtsigner: %s is larger than %d bytes", path, maxFileSize)
	}
	return b, nil
}

// save writes a new key: a temporary file with mode 0600, synced, then
// linked into place so an existing key is never replaced, then the
// directory is synced.
func save(dir string, sk crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(sk)
	if err != nil {
		return fmt.Errorf("jwtsigner: marshal key: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	f, err := os.CreateTemp(dir, "."+KeyFileName+".tmp-*")
	if err != nil {
		return fmt.Errorf("jwtsigner: write key: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	err = f.Chmod(keyMode)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("jwtsigner: write key: %w", err)
	}
	// Link fails if the name exists: a key that appeared meanwhile (another
	// process) is kept, never overwritten.
	if err := os.Link(tmp, filepath.Join(dir, KeyFileName)); err != nil {
		return fmt.Errorf("jwtsigner: install key: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("jwtsigner: sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("jwtsigner: sync directory: %w", err)
	}
	return nil
}
