package ca

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

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Names of the files the CA keeps in Config.Dir.
const (
	KeyFileName  = "ca-key.pem"  // PKCS#8 "PRIVATE KEY", mode 0600
	CertFileName = "ca-cert.pem" // "CERTIFICATE", mode 0644
)

const (
	keyMode  fs.FileMode = 0o600
	certMode fs.FileMode = 0o644

	maxFileSize = 1 << 20 // generous bound for a PEM key or certificate
)

// stored is a CA key and certificate as found on disk.
type stored struct {
	signer crypto.Signer
	cert   *x509.Certificate
}

// errNoCA reports that neither file exists: a fresh directory.
var errNoCA = errors.New("ca: no persisted CA")

// load reads the persisted CA from dir. It returns errNoCA when neither file
// exists, and a descriptive error for a half-present, unreadable or
// inconsistent CA; it never modifies the directory.
func load(dir string, td spiffeid.TrustDomain) (*stored, error) {
	keyPath := filepath.Join(dir, KeyFileName)
	certPath := filepath.Join(dir, CertFileName)
	keyFI, keyErr := os.Stat(keyPath)
	_, certErr := os.Stat(certPath)
	keyMissing := errors.Is(keyErr, fs.ErrNotExist)
	certMissing := errors.Is(certErr, fs.ErrNotExist)
	switch {
	case keyMissing && certMissing:
		return nil, errNoCA
	case keyMissing:
		return nil, fmt.Errorf("ca: %s exists but %s is missing; restore it, or remove both files to create a new CA", certPath, keyPath)
	case certMissing:
		return nil, fmt.Errorf("ca: %s exists but %s is missing; restore it, or remove both files to create a new CA", keyPath, certPath)
	case keyErr != nil:
		return nil, fmt.Errorf("ca: key file: %w", keyErr)
	case certErr != nil:
		return nil, fmt.Errorf("ca: certificate file: %w", certErr)
	}
	if !keyFI.Mode().IsRegular() {
		return nil, fmt.Errorf("ca: key file %s is not a regular file", keyPath)
	}
	if perm := keyFI.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("ca: key file %s has mode %#o; want 0600 (no group or other access)", keyPath, perm)
	}

	keyPEM, err := readBounded(keyPath)
	if err != nil {
		return nil, err
	}
	keyDER, err := decodeSinglePEM(keyPEM, "PRIVATE KEY")
	if err != nil {
		return nil, fmt.Errorf("ca: key file %s: %w", keyPath, err)
	}
	k, err := x509.ParsePKCS8PrivateKey(keyDER)
	if err != nil {
		return nil, fmt.Errorf("ca: key file %s: parse PKCS#8: %w", keyPath, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("ca: key file %s: key of type %T cannot sign", keyPath, k)
	}
	if _, err := keyTypeOf(signer); err != nil {
		return nil, fmt.Errorf("ca: key file %s: %w", keyPath, err)
	}

	certPEM, err := readBounded(certPath)
	if err != nil {
		return nil, err
	}
	certDER, err := decodeSinglePEM(certPEM, "CERTIFICATE")
	if err != nil {
		return nil, fmt.Errorf("ca: certificate file %s: %w", certPath, err)
	}
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, fmt.Errorf("ca: certificate file %s: %w", certPath, err)
	}
	if err := checkRoot(cert, signer, td); err != nil {
		return nil, fmt.Errorf("ca: certificate file %s: %w", certPath, err)
	}
	return &stored{signer: signer, cert: cert}, nil
}

// checkRoot verifies that cert is a usable self-signed root of td whose key
// is signer's.
func checkRoot(cert *x509.Certificate, signer crypto.Signer, td spiffeid.TrustDomain) error {
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return errors.New("certificate does not match the key file")
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return errors.New("certificate is not a CA")
	}
	if cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return errors.New("certificate lacks the certSign key usage")
	}
	if len(cert.URIs) != 1 {
		return fmt.Errorf("certificate has %d URI SANs, want 1", len(cert.URIs))
	}
	got, err := spiffeid.FromURI(cert.URIs[0])
	if err != nil {
		return fmt.Errorf("certificate URI SAN: %w", err)
	}
	if got != td.ID() {
		return fmt.Errorf("certificate is for %q, but the configured trust domain is %q", got, td)
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		return fmt.Errorf("certificate is not validly self-signed: %w", err)
	}
	return nil
}

// readBounded reads a PEM file of at most maxFileSize bytes.
func readBounded(path string) ([]byte, error) { return files.ReadBounded(path, maxFileSize) }

// decodeSinglePEM returns the bytes of the only PEM block in data, which
// must be of type typ, with nothing but whitespace around it.
func decodeSinglePEM(data []byte, typ string) ([]byte, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	if block.Type != typ {
		return nil, fmt.Errorf("PEM block is %q, want %q", block.Type, typ)
	}
	if len(block.Headers) != 0 {
		return nil, errors.New("PEM block has headers (encrypted keys are not supported)")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("unexpected data after the PEM block")
	}
	return block.Bytes, nil
}

// save writes a freshly created CA to dir. Each file is written to a
// temporary file, synced, and renamed into place; the directory is synced
// last. It refuses to replace files that appeared in the meantime.
func save(dir string, signer crypto.Signer, cert *x509.Certificate) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(signer)
	if err != nil {
		return fmt.Errorf("ca: marshal key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})

	keyTmp, err := files.WriteTemp(dir, KeyFileName, keyPEM, keyMode)
	if err != nil {
		return err
	}
	defer os.Remove(keyTmp) // no-op after a successful rename
	certTmp, err := files.WriteTemp(dir, CertFileName, certPEM, certMode)
	if err != nil {
		return err
	}
	defer os.Remove(certTmp)

	keyPath := filepath.Join(dir, KeyFileName)
	certPath := filepath.Join(dir, CertFileName)
	for _, p := range []string{keyPath, certPath} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("ca: %s appeared while creating the CA; not overwriting it", p)
		}
	}
	// The key goes first: a crash between the renames leaves a key without
	// a certificate, which load reports rather than silently replacing.
	if err := os.Rename(keyTmp, keyPath); err != nil {
		return fmt.Errorf("ca: install key: %w", err)
	}
	if err := os.Rename(certTmp, certPath); err != nil {
		return fmt.Errorf("ca: install certificate: %w", err)
	}
	return files.SyncDir(dir)
}
