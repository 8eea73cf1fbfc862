package tpm_test

import (
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tpmatt "github.com/hallmarkid/hallmark/attestors/tpm"
	"github.com/hallmarkid/hallmark/tpm/tpmtest"
)

// writeCRLDir writes files (name → contents) into a new directory.
func writeCRLDir(t testing.TB, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// pemToDER returns the DER of the first PEM block of b.
func pemToDER(t testing.TB, b []byte) []byte {
	t.Helper()
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("not PEM")
	}
	return blk.Bytes
}

// ekSerial returns the serial number of the node's EK certificate.
func ekSerial(t testing.TB, n *node) *big.Int {
	t.Helper()
	ek, err := n.col.Device().EK()
	if err != nil {
		t.Fatal(err)
	}
	c, err := tpmatt.ParseEKCert(ek.Cert)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber
}

// A CRL directory that cannot be trusted stops start-up: not signed by a
// configured CA, out of date, delta or garbage. A good one in PEM or DER
// is accepted.
func TestEKCRLConfig(t *testing.T) {
	ca := tpmtest.SharedCA(t, "a")
	caDirA := caDir(t, "a")
	other := tpmtest.SharedCA(t, "crl-other")
	inter, err := ca.Intermediate("Hallmark Test EK intermediate for CRLs")
	if err != nil {
		t.Fatal(err)
	}
	// ek_ca_dir with the root and the intermediate, for an intermediate's CRL.
	both := t.TempDir()
	os.WriteFile(filepath.Join(both, "root.pem"), ca.CertPEM, 0o644)
	os.WriteFile(filepath.Join(both, "inter.pem"), inter.CertPEM, 0o644)

	now := time.Now()
	day := 24 * time.Hour
	good := ca.CRL(t, 1, now.Add(-time.Hour), now.Add(day), big.NewInt(42))
	for _, tc := range []struct {
		name    string
		caDir   string
		files   map[string][]byte
		noDir   bool
		wantErr string
	}{
		{name: "PEM CRL", files: map[string][]byte{"a.crl": good}},
		{name: "DER CRL", files: map[string][]byte{"a.der": pemToDER(t, good)}},
		{name: "two CRLs in one PEM file", files: map[string][]byte{"a.pem": append(append([]byte{}, good...), ca.CRL(t, 2, now.Add(-time.Hour), now.Add(day))...)}},
		{name: "CRL of an intermediate in ek_ca_dir", caDir: both, files: map[string][]byte{"i.crl": inter.CRL(t, 1, now.Add(-time.Hour), now.Add(day))}},
		{name: "other files ignored", files: map[string][]byte{"a.crl": good, "README": []byte("not a CRL")}},

		{name: "CRL of a CA not in ek_ca_dir", files: map[string][]byte{"o.crl": other.CRL(t, 1, now.Add(-time.Hour), now.Add(day))}, wantErr: "not signed by a certificate in ek_ca_dir"},
		{name: "CRL of an intermediate not in ek_ca_dir", files: map[string][]byte{"i.crl": inter.CRL(t, 1, now.Add(-time.Hour), now.Add(day))}, wantErr: "not signed by a certificate in ek_ca_dir"},
		{name: "CRL signature altered", files: map[string][]byte{"a.der": func() []byte {
			der := pemToDER(t, good)
			der[len(der)-5] ^= 0x01
			return der
		}()}, wantErr: "a.der: CRL of \"CN=Hallmark Test EK CA a,O=Hallmark test TPM manufacturer\" is not signed by"},
		{name: "CRL expired", files: map[string][]byte{"a.crl": ca.CRL(t, 1, now.Add(-2*day), now.Add(-day))}, wantErr: "expired at"},
		{name: "CRL from the future", files: map[string][]byte{"a.crl": ca.CRL(t, 1, now.Add(day), now.Add(2*day))}, wantErr: "not valid before"},
		{name: "garbage", files: map[string][]byte{"a.crl": []byte("garbage")}, wantErr: "a.crl"},
		{name: "certificate instead of CRL", files: map[string][]byte{"a.pem": ca.CertPEM}, wantErr: `PEM block "CERTIFICATE" is not an X509 CRL`},
		{name: "empty directory", files: map[string][]byte{}, wantErr: "holds no CRL files"},
		{name: "missing directory", noDir: true, wantErr: "ek_crl_dir"},
		{name: "without ek_ca_dir", caDir: "-", files: map[string][]byte{"a.crl": good}, wantErr: "ek_crl_dir needs ek_ca_dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := "/nonexistent/crls"
			if !tc.noDir {
				dir = writeCRLDir(t, tc.files)
			}
			cfg := tpmatt.ServerConfig{EKCADir: caDirA, EKCRLDir: dir}
			switch tc.caDir {
			case "":
			case "-":
				cfg.EKCADir, cfg.EKHashes = "", []string{strings.Repeat("ab", 32)}
			default:
				cfg.EKCADir = tc.caDir
			}
			_, err := tpmatt.NewVerifier(cfg, nil)
			checkErr(t, err, tc.wantErr)
		})
	}
}

// A revoked EK certificate is refused, also when its EK is allow-listed;
// a CRL that revokes other serials changes nothing; a CRL that goes out of
// date while the server runs refuses the CA's EKs (fail closed) unless the
// EK is allow-listed by hash.
func TestEKRevocation(t *testing.T) {
	ca := tpmtest.SharedCA(t, "a")
	n := newNode(t, nodeOpts{})
	serial := ekSerial(t, n)
	h := ekHash(t, n)
	now := time.Now()
	day := 24 * time.Hour
	revoking := writeCRLDir(t, map[string][]byte{"a.crl": ca.CRL(t, 7, now.Add(-time.Hour), now.Add(day), big.NewInt(99), serial)})
	unrelated := writeCRLDir(t, map[string][]byte{"a.crl": ca.CRL(t, 7, now.Add(-time.Hour), now.Add(day), big.NewInt(99))})

	for _, tc := range []struct {
		name      string
		crlDir    string
		allowList bool
		later     time.Duration // time passing between start-up and attestation
		wantErr   string
	}{
		{name: "no CRL", crlDir: ""},
		{name: "CRL revoking other serials", crlDir: unrelated},
		{name: "revoked EK", crlDir: revoking, wantErr: "EK certificate (serial " + serial.String() + ") is revoked by"},
		{name: "revoked EK in ek_hashes", crlDir: revoking, allowList: true, wantErr: "is revoked by"},
		{name: "CRL out of date while running", crlDir: unrelated, later: 2 * day, wantErr: "revocation status unknown"},
		{name: "CRL out of date, EK in ek_hashes", crlDir: unrelated, later: 2 * day, allowList: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tpmatt.ServerConfig{EKCADir: caDir(t, "a"), EKCRLDir: tc.crlDir}
			if tc.allowList {
				cfg.EKHashes = []string{h}
			}
			clock := time.Now()
			cfg.Now = func() time.Time { return clock }
			v := newVerifier(t, cfg)
			clock = clock.Add(tc.later)
			res, err := attest(t, v, n, round{})
			checkErr(t, err, tc.wantErr)
			if tc.wantErr == "" && res.AgentID.IsZero() {
				t.Fatal("accepted without an agent ID")
			}
		})
	}
}

// ParseCRLFile takes PEM (one or more CRLs) and DER, and nothing else.
func TestParseCRLFile(t *testing.T) {
	ca := tpmtest.SharedCA(t, "a")
	now := time.Now()
	good := ca.CRL(t, 1, now, now.Add(time.Hour))
	for _, tc := range []struct {
		name    string
		in      []byte
		want    int
		wantErr string
	}{
		{name: "PEM", in: good, want: 1},
		{name: "DER", in: pemToDER(t, good), want: 1},
		{name: "two PEM", in: append(append([]byte{}, good...), good...), want: 2},
		{name: "PEM with trailing junk", in: append(append([]byte{}, good...), "junk"...), wantErr: "after the last PEM block"},
		{name: "DER with trailing bytes", in: append(pemToDER(t, good), 0), wantErr: "trailing"},
		{name: "empty", in: nil, wantErr: "malformed"},
		{name: "PEM of a key", in: []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), wantErr: "not an X509 CRL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			crls, err := tpmatt.ParseCRLFile(tc.in)
			checkErr(t, err, tc.wantErr)
			if tc.wantErr == "" && len(crls) != tc.want {
				t.Fatalf("%d CRLs, want %d", len(crls), tc.want)
			}
			for _, c := range crls {
				if c.CheckSignatureFrom(ca.Cert) != nil {
					t.Fatal("parsed CRL does not verify")
				}
			}
		})
	}
}
