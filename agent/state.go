package agent

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// stateDir persists the agent SVID, its key and the trust bundle so a
// restart does not re-attest while the SVID is valid. Files are 0600 in a
// 0700 directory and replaced atomically.
type stateDir struct{ dir string }

const (
	svidFile        = "agent_svid.pem"
	keyFile         = "agent_key.pem"
	bundleFile      = "bundle.pem"
	reattestFile    = "can_reattest"
	maxStateFileLen = 1 << 20
)

func (s *stateDir) init() error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("agent: data_dir: %w", err)
	}
	return os.Chmod(s.dir, 0o700)
}

func (s *stateDir) path(name string) string { return filepath.Join(s.dir, name) }

func (s *stateDir) write(name string, data []byte) error {
	tmp, err := os.CreateTemp(s.dir, name+".tmp*")
	if err != nil {
		return fmt.Errorf("agent: persist %s: %w", name, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("agent: persist %s: %w", name, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), s.path(name))
}

func (s *stateDir) read(name string) ([]byte, error) {
	f, err := os.Open(s.path(name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, maxStateFileLen+1)
	n, err := f.Read(buf)
	if err != nil {
		return nil, err
	}
	if n > maxStateFileLen {
		return nil, fmt.Errorf("agent: %s is too large", name)
	}
	return buf[:n], nil
}

func certsPEM(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

func (s *stateDir) saveSVID(svid *x509svid.SVID, canReattest bool) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(svid.PrivateKey)
	if err != nil {
		return fmt.Errorf("agent: marshal key: %w", err)
	}
	// Key first: an SVID file never points at a key that is not there yet.
	if err := s.write(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})); err != nil {
		return err
	}
	if err := s.write(svidFile, certsPEM(svid.Certificates)); err != nil {
		return err
	}
	flag := []byte("false")
	if canReattest {
		flag = []byte("true")
	}
	return s.write(reattestFile, flag)
}

func (s *stateDir) loadSVID(td spiffeid.TrustDomain) (*x509svid.SVID, bool, error) {
	certPEM, err := s.read(svidFile)
	if err != nil {
		return nil, false, err
	}
	keyPEM, err := s.read(keyFile)
	if err != nil {
		return nil, false, err
	}
	svid, err := x509svid.Parse(certPEM, keyPEM)
	if err != nil {
		return nil, false, fmt.Errorf("agent: persisted SVID: %w", err)
	}
	if svid.ID.TrustDomain() != td {
		return nil, false, fmt.Errorf("agent: persisted SVID is for trust domain %q", svid.ID.TrustDomain())
	}
	flag, _ := s.read(reattestFile)
	if _, ok := svid.PrivateKey.(crypto.Signer); !ok {
		return nil, false, errors.New("agent: persisted key is not a signer")
	}
	return svid, string(flag) == "true", nil
}

func (s *stateDir) saveBundle(certs []*x509.Certificate) error {
	return s.write(bundleFile, certsPEM(certs))
}

func (s *stateDir) loadBundle() ([]*x509.Certificate, error) {
	data, err := s.read(bundleFile)
	if err != nil {
		return nil, err
	}
	return parsePEMCerts(data)
}

func readPEMCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parsePEMCerts(data)
}

func parsePEMCerts(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no certificates found")
	}
	return out, nil
}
