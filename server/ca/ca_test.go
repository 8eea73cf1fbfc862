package ca_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/server/ca"
)

func TestNewConfigErrors(t *testing.T) {
	base := t.TempDir()
	notDir := filepath.Join(base, "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	openDir := filepath.Join(base, "open")
	if err := os.Mkdir(openDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(openDir, 0o777); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     ca.Config
		wantErr string
	}{
		{name: "no trust domain", cfg: ca.Config{Dir: t.TempDir()}, wantErr: "ca: TrustDomain is required"},
		{name: "unknown key type", cfg: ca.Config{TrustDomain: td, KeyType: "ed25519", Dir: t.TempDir()}, wantErr: `unknown key type "ed25519"`},
		{name: "rsa-4096 not offered", cfg: ca.Config{TrustDomain: td, KeyType: "rsa-4096", Dir: t.TempDir()}, wantErr: "unknown key type"},
		{name: "negative TTL", cfg: ca.Config{TrustDomain: td, TTL: -time.Hour, Dir: t.TempDir()}, wantErr: "negative TTL"},
		{name: "no dir", cfg: ca.Config{TrustDomain: td}, wantErr: "Dir is required"},
		{name: "dir is a file", cfg: ca.Config{TrustDomain: td, Dir: notDir}, wantErr: "is not a directory"},
		{name: "dir writable by others", cfg: ca.Config{TrustDomain: td, Dir: openDir}, wantErr: "must not be able to write"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ca.New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New() error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestNewCreatesRoot(t *testing.T) {
	tests := []struct {
		name    string
		keyType string
		check   func(t *testing.T, pub any)
	}{
		{name: "default is P-256", keyType: "", check: wantCurve(elliptic.P256())},
		{name: "ec-p256", keyType: ca.KeyTypeECP256, check: wantCurve(elliptic.P256())},
		{name: "ec-p384", keyType: ca.KeyTypeECP384, check: wantCurve(elliptic.P384())},
		{name: "rsa-2048", keyType: ca.KeyTypeRSA2048, check: func(t *testing.T, pub any) {
			k, ok := pub.(*rsa.PublicKey)
			if !ok || k.N.BitLen() != 2048 {
				t.Errorf("public key %T, want RSA-2048", pub)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, dir := newCA(t, tt.keyType)
			root := c.Certificate()
			tt.check(t, root.PublicKey)

			if !root.BasicConstraintsValid || !root.IsCA {
				t.Error("root is not a CA")
			}
			wantKU := x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
			if root.KeyUsage != wantKU {
				t.Errorf("KeyUsage = %v, want %v", root.KeyUsage, wantKU)
			}
			if len(root.URIs) != 1 || root.URIs[0].String() != "spiffe://example.org" {
				t.Errorf("URIs = %v, want [spiffe://example.org]", root.URIs)
			}
			if got := root.Subject.Organization; len(got) != 1 || got[0] != "Hallmark" {
				t.Errorf("Subject O = %v", got)
			}
			if !strings.Contains(root.Subject.CommonName, "example.org") {
				t.Errorf("Subject CN = %q, want the trust domain in it", root.Subject.CommonName)
			}
			if len(root.SubjectKeyId) == 0 {
				t.Error("no SubjectKeyId")
			}
			if !bytes.Equal(root.RawSubject, root.RawIssuer) {
				t.Error("root is not self-issued")
			}
			if err := root.CheckSignatureFrom(root); err != nil {
				t.Errorf("root is not self-signed: %v", err)
			}
			if root.SerialNumber.Sign() <= 0 {
				t.Errorf("serial %v is not positive", root.SerialNumber)
			}
			if !root.NotBefore.Equal(t0.Add(-ca.Backdate)) || !root.NotAfter.Equal(t0.Add(30*24*time.Hour)) {
				t.Errorf("validity %s..%s", root.NotBefore, root.NotAfter)
			}
			if b := c.Bundle(); len(b) != 1 || !b[0].Equal(root) {
				t.Errorf("Bundle() = %d certificates, want the root", len(b))
			}

			if m := fileMode(t, dir); m != 0o700 {
				t.Errorf("dir mode %#o, want 0700", m)
			}
			if m := fileMode(t, filepath.Join(dir, ca.KeyFileName)); m != 0o600 {
				t.Errorf("key mode %#o, want 0600", m)
			}
			if m := fileMode(t, filepath.Join(dir, ca.CertFileName)); m != 0o644 {
				t.Errorf("cert mode %#o, want 0644", m)
			}
			block, _ := pem.Decode(readFile(t, filepath.Join(dir, ca.KeyFileName)))
			if block == nil || block.Type != "PRIVATE KEY" {
				t.Fatal("key file is not a PKCS#8 PEM block")
			}
			if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
				t.Errorf("key file: %v", err)
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 2 {
				t.Errorf("dir holds %d entries, want 2 (no temp files left)", len(entries))
			}
		})
	}
}

func wantCurve(c elliptic.Curve) func(t *testing.T, pub any) {
	return func(t *testing.T, pub any) {
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok || k.Curve != c {
			t.Errorf("public key %T, want ECDSA %s", pub, c.Params().Name)
		}
	}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRestartKeepsCA(t *testing.T) {
	c1, clk, dir := newCA(t, ca.KeyTypeECP384)
	keyBefore := readFile(t, filepath.Join(dir, ca.KeyFileName))
	clk.Set(t0.Add(time.Hour))

	log, buf := logBuffer()
	// A different configured key type must not replace the persisted key.
	c2, err := ca.New(ca.Config{TrustDomain: td, KeyType: ca.KeyTypeRSA2048, Dir: dir, Clock: clk.Now, Log: log})
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	if !c2.Certificate().Equal(c1.Certificate()) {
		t.Fatal("restart produced a different CA certificate")
	}
	if !bytes.Equal(readFile(t, filepath.Join(dir, ca.KeyFileName)), keyBefore) {
		t.Fatal("restart rewrote the key file")
	}
	if !strings.Contains(buf.String(), "persisted CA key type differs") || !strings.Contains(buf.String(), "persisted=ec-p384") {
		t.Errorf("no key-type warning logged: %s", buf.String())
	}
	// An SVID from the restarted CA verifies against the first one's bundle,
	// which proves the signing key is the same.
	chain, err := c2.SignX509SVID(t.Context(), ca.X509SVIDParams{ID: wlID, PublicKey: ecKey(t, elliptic.P256()).Public(), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c1.Bundle()[0])
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: pool, CurrentTime: clk.Now()}); err != nil {
		t.Fatalf("SVID from restarted CA does not verify against the original root: %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	// Material from two other CAs to build broken directories with.
	_, _, dirA := newCA(t, ca.KeyTypeECP256)
	_, _, dirB := newCA(t, ca.KeyTypeECP256)
	keyA := readFile(t, filepath.Join(dirA, ca.KeyFileName))
	certA := readFile(t, filepath.Join(dirA, ca.CertFileName))
	certB := readFile(t, filepath.Join(dirB, ca.CertFileName))
	otherTD := spiffeid.RequireTrustDomainFromString("other.org")
	dirOther := filepath.Join(t.TempDir(), "ca")
	if _, err := ca.New(ca.Config{TrustDomain: otherTD, Dir: dirOther, Clock: func() time.Time { return t0 }}); err != nil {
		t.Fatal(err)
	}
	ed := edKey(t)
	edDER, err := x509.MarshalPKCS8PrivateKey(ed)
	if err != nil {
		t.Fatal(err)
	}
	edPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: edDER})
	ecDER, err := x509.MarshalECPrivateKey(ecKey(t, elliptic.P256()))
	if err != nil {
		t.Fatal(err)
	}
	sec1PEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})

	tests := []struct {
		name    string
		key     []byte // nil: absent
		keyMode os.FileMode
		cert    []byte
		wantErr string
	}{
		{name: "key missing", cert: certA, wantErr: "ca-key.pem is missing"},
		{name: "cert missing", key: keyA, wantErr: "ca-cert.pem is missing"},
		{name: "key garbage", key: []byte("not a key"), cert: certA, wantErr: "no PEM block"},
		{name: "key truncated", key: keyA[:len(keyA)/2], cert: certA, wantErr: "no PEM block"},
		{name: "key is SEC1", key: sec1PEM, cert: certA, wantErr: `PEM block is "EC PRIVATE KEY"`},
		{name: "key trailing data", key: append(append([]byte{}, keyA...), "junk"...), cert: certA, wantErr: "unexpected data after"},
		{name: "key mode 0644", key: keyA, keyMode: 0o644, cert: certA, wantErr: "has mode 0644"},
		{name: "key Ed25519", key: edPEM, cert: certA, wantErr: "unsupported CA key type"},
		{name: "key PEM corrupt DER", key: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{0x30, 0x03, 1, 2, 3}}), cert: certA, wantErr: "parse PKCS#8"},
		{name: "cert garbage", key: keyA, cert: []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), wantErr: "ca-cert.pem"},
		{name: "cert of another CA", key: keyA, cert: certB, wantErr: "does not match the key file"},
		{name: "cert of another trust domain", key: readFile(t, filepath.Join(dirOther, ca.KeyFileName)), cert: readFile(t, filepath.Join(dirOther, ca.CertFileName)), wantErr: `configured trust domain is "example.org"`},
		{name: "two certs", key: keyA, cert: append(append([]byte{}, certA...), certB...), wantErr: "unexpected data after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			mode := tt.keyMode
			if mode == 0 {
				mode = 0o600
			}
			if tt.key != nil {
				writeMode(t, filepath.Join(dir, ca.KeyFileName), tt.key, mode)
			}
			if tt.cert != nil {
				writeMode(t, filepath.Join(dir, ca.CertFileName), tt.cert, 0o644)
			}
			_, err := ca.New(ca.Config{TrustDomain: td, Dir: dir, Clock: func() time.Time { return t0 }})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New() error = %v, want %q", err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "ca: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			// Nothing was overwritten or added.
			if tt.key != nil && !bytes.Equal(readFile(t, filepath.Join(dir, ca.KeyFileName)), tt.key) {
				t.Error("key file was modified")
			}
			if tt.cert != nil && !bytes.Equal(readFile(t, filepath.Join(dir, ca.CertFileName)), tt.cert) {
				t.Error("cert file was modified")
			}
			entries, _ := os.ReadDir(dir)
			want := 0
			if tt.key != nil {
				want++
			}
			if tt.cert != nil {
				want++
			}
			if len(entries) != want {
				t.Errorf("dir holds %d entries, want %d", len(entries), want)
			}
		})
	}
}

func writeMode(t testing.TB, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func TestExpiryWarnings(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ttl := 6 * time.Hour
	if _, err := ca.New(ca.Config{TrustDomain: td, Dir: dir, TTL: ttl, Clock: func() time.Time { return t0 }}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		at       time.Time
		wantLog  string // "" means no warning
		wantSign string // "" means signing works
	}{
		{name: "fresh", at: t0.Add(time.Hour)},
		{name: "within a sixth of expiry", at: t0.Add(5*time.Hour + 10*time.Minute), wantLog: "expires soon"},
		{name: "expired", at: t0.Add(7 * time.Hour), wantLog: "has expired", wantSign: "CA certificate expired"},
		{name: "exactly at NotAfter", at: t0.Add(ttl), wantLog: "has expired", wantSign: "CA certificate expired"},
		{name: "clock before NotBefore", at: t0.Add(-time.Hour), wantLog: "not valid yet", wantSign: "clock skew"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, buf := logBuffer()
			c, err := ca.New(ca.Config{TrustDomain: td, Dir: dir, Clock: func() time.Time { return tt.at }, Log: log})
			if err != nil {
				t.Fatalf("New with an old CA must still start: %v", err)
			}
			hasWarn := strings.Contains(buf.String(), "level=WARN")
			if tt.wantLog == "" && hasWarn {
				t.Errorf("unexpected warning: %s", buf.String())
			}
			if tt.wantLog != "" && (!hasWarn || !strings.Contains(buf.String(), tt.wantLog)) {
				t.Errorf("log = %s, want a warning with %q", buf.String(), tt.wantLog)
			}
			_, err = c.SignX509SVID(t.Context(), ca.X509SVIDParams{ID: wlID, PublicKey: ecKey(t, elliptic.P256()).Public(), TTL: time.Hour})
			switch {
			case tt.wantSign == "" && err != nil:
				t.Errorf("SignX509SVID: %v", err)
			case tt.wantSign != "" && (err == nil || !strings.Contains(err.Error(), tt.wantSign)):
				t.Errorf("SignX509SVID error = %v, want %q", err, tt.wantSign)
			}
		})
	}
}
