package tpm

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/tpm/tpmtest"
)

// leafCert returns a certificate with serial, signed by ca.
func leafCert(t testing.TB, ca *tpmtest.CA, serial int64) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "EK"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func writeDir(t testing.TB, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Revocation is checked on every link of the chain, for intermediates of
// ek_ca_dir and intermediates the agent sends alike.
func TestCRLChain(t *testing.T) {
	root, err := tpmtest.NewCA("chain root")
	if err != nil {
		t.Fatal(err)
	}
	inter, err := root.Intermediate("chain intermediate")
	if err != nil {
		t.Fatal(err)
	}
	leaf := leafCert(t, inter, 4242)
	now := time.Now()
	next := now.Add(time.Hour)
	rootOnly := writeDir(t, map[string][]byte{"root.pem": root.CertPEM})
	both := writeDir(t, map[string][]byte{"root.pem": root.CertPEM, "inter.pem": inter.CertPEM})
	for _, tc := range []struct {
		name    string
		caDir   string
		crls    map[string][]byte
		chain   [][]byte // sent by the agent
		wantErr string
	}{
		{name: "nothing revoked", caDir: both, crls: map[string][]byte{"r.crl": root.CRL(t, 1, now, next, big.NewInt(1)), "i.crl": inter.CRL(t, 1, now, next, big.NewInt(1))}},
		{name: "leaf revoked by the intermediate", caDir: both, crls: map[string][]byte{"i.crl": inter.CRL(t, 1, now, next, big.NewInt(4242))},
			wantErr: "EK certificate (serial 4242) is revoked by \"CN=chain intermediate"},
		{name: "intermediate revoked by the root", caDir: both, crls: map[string][]byte{"r.crl": root.CRL(t, 1, now, next, inter.Cert.SerialNumber)},
			wantErr: "EK CA certificate \"CN=chain intermediate,O=Hallmark test TPM manufacturer\" (serial " + inter.Cert.SerialNumber.String() + ") is revoked by \"CN=chain root"},
		{name: "intermediate sent by the agent, revoked by the root", caDir: rootOnly, chain: [][]byte{inter.Cert.Raw},
			crls: map[string][]byte{"r.crl": root.CRL(t, 1, now, next, inter.Cert.SerialNumber)}, wantErr: "is revoked by \"CN=chain root"},
		{name: "intermediate sent by the agent, not revoked", caDir: rootOnly, chain: [][]byte{inter.Cert.Raw},
			crls: map[string][]byte{"r.crl": root.CRL(t, 1, now, next, big.NewInt(4242))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ServerConfig{EKCADir: tc.caDir, EKCRLDir: writeDir(t, tc.crls)}
			p, err := cfg.validate()
			if err != nil {
				t.Fatal(err)
			}
			err = verifyEKCert(leaf, tc.chain, leaf.PublicKey, p, now)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatal(err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// FuzzCRLSetAdd feeds arbitrary file contents to the CRL loader with a CA
// of ek_ca_dir: no panic, and whatever is accepted was signed by that CA
// and is current.
func FuzzCRLSetAdd(f *testing.F) {
	ca, err := tpmtest.NewCA("fuzz CA")
	if err != nil {
		f.Fatal(err)
	}
	other, err := tpmtest.NewCA("fuzz other CA")
	if err != nil {
		f.Fatal(err)
	}
	now := time.Now()
	good := ca.CRL(f, 3, now.Add(-time.Minute), now.Add(time.Hour), big.NewInt(1), big.NewInt(1<<40))
	blk, _ := pem.Decode(good)
	f.Add(good)
	f.Add(blk.Bytes)
	f.Add(append(append([]byte{}, good...), good...))
	f.Add(other.CRL(f, 1, now.Add(-time.Minute), now.Add(time.Hour)))
	f.Add(ca.CRL(f, 1, now.Add(-2*time.Hour), now.Add(-time.Hour)))
	f.Add(ca.CertPEM)
	f.Add([]byte("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"))
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		s := &crlSet{byIssuer: map[string]*issuerCRL{}}
		if err := s.add("fuzz.crl", b, []*x509.Certificate{ca.Cert}, now); err != nil {
			return
		}
		crls, err := ParseCRLFile(b)
		if err != nil {
			t.Fatalf("accepted a file ParseCRLFile refuses: %v", err)
		}
		for _, c := range crls {
			if c.CheckSignatureFrom(ca.Cert) != nil {
				t.Fatal("accepted a CRL not signed by the CA")
			}
			if !c.NextUpdate.IsZero() && now.After(c.NextUpdate) {
				t.Fatal("accepted an expired CRL")
			}
		}
		if len(s.byIssuer) != 1 {
			t.Fatalf("%d issuers", len(s.byIssuer))
		}
	})
}
