package tpm_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/hallmarkid/hallmark/tpm"
	"github.com/hallmarkid/hallmark/tpm/tpmtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	tpmtest.Cleanup()
	os.Exit(code)
}

func start(t *testing.T, opts ...tpm.Option) (*tpm.Device, *tpmtest.Instance, *tpmtest.Template) {
	t.Helper()
	tmpl := tpmtest.Shared(t, "a", tpmtest.SharedCA(t, "a"))
	in := tmpl.Start(t)
	d, err := tpm.Open(in.Device(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, in, tmpl
}

func TestEK(t *testing.T) {
	for _, tc := range []struct {
		name    string
		alg     tpm.KeyAlg
		keyType string
	}{
		{name: "rsa", alg: tpm.RSA, keyType: "*rsa.PublicKey"},
		{name: "ecc", alg: tpm.ECC, keyType: "*ecdsa.PublicKey"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _, tmpl := start(t, tpm.WithEK(tc.alg))
			ek, err := d.EK()
			if err != nil {
				t.Fatal(err)
			}
			switch ek.Key.(type) {
			case *rsa.PublicKey, *ecdsa.PublicKey:
			default:
				t.Fatalf("EK key type %T", ek.Key)
			}
			if ek.Cert == nil {
				t.Fatal("no EK certificate")
			}
			cert, err := x509.ParseCertificate(ek.Cert)
			if err != nil {
				t.Fatal(err)
			}
			if err := cert.CheckSignatureFrom(tmpl.CA.Cert); err != nil {
				t.Fatalf("EK cert not signed by the test CA: %v", err)
			}
			want, err := tpm.PublicKeyHash(cert.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			got, err := d.EKHash()
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Fatalf("EKHash = %s, cert key hash %s", got, want)
			}
		})
	}
}

func TestInfo(t *testing.T) {
	d, _, _ := start(t)
	info, err := d.Info()
	if err != nil {
		t.Fatal(err)
	}
	if info.Manufacturer != "IBM" || info.EKHash == "" || !strings.Contains(info.EKCertIssuer, "Hallmark Test EK CA") {
		t.Fatalf("info = %+v", info)
	}
	if strings.Join(info.PCRBanks, ",") != "sha1,sha256" {
		t.Fatalf("banks = %v", info.PCRBanks)
	}
}

func TestAKActivateQuote(t *testing.T) {
	for _, alg := range []tpm.KeyAlg{tpm.ECC, tpm.RSA} {
		t.Run(string(alg), func(t *testing.T) {
			d, _, _ := start(t)
			dir := t.TempDir()
			ak, err := d.LoadOrCreateAK(dir, alg)
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(filepath.Join(dir, "tpm_ak_"+string(alg)+".blob"))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Fatalf("AK blob mode %v", fi.Mode())
			}
			again, err := d.LoadOrCreateAK(dir, alg)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again.Public, ak.Public) {
				t.Fatal("AK not reused from its blob")
			}

			ek, err := d.EK()
			if err != nil {
				t.Fatal(err)
			}
			ekPub, err := tpm2.Unmarshal[tpm2.TPMTPublic](ek.Public)
			if err != nil {
				t.Fatal(err)
			}
			encKey, err := tpm2.ImportEncapsulationKey(ekPub)
			if err != nil {
				t.Fatal(err)
			}
			secret := []byte("0123456789abcdef0123456789abcdef")
			blob, enc, err := tpm2.CreateCredential(rand.Reader, encKey, ak.Name, secret)
			if err != nil {
				t.Fatal(err)
			}
			got, err := d.ActivateCredential(ak, blob, enc)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, secret) {
				t.Fatal("activated secret differs")
			}

			q, err := d.Quote(ak, []byte("nonce"), "sha256", []int{0, 1, 2, 3, 4, 5, 6, 7, 16})
			if err != nil {
				t.Fatal(err)
			}
			if len(q.PCRs) != 9 || len(q.Attest) == 0 || len(q.Signature) == 0 {
				t.Fatalf("quote = %+v", q)
			}
		})
	}
}

func TestPCRExtendResetReboot(t *testing.T) {
	d, in, _ := start(t)
	zero := make([]byte, 32)
	if err := d.ExtendPCR(16, "sha256", bytes.Repeat([]byte{1}, 32)); err != nil {
		t.Fatal(err)
	}
	v, err := d.ReadPCRs("sha256", []int{16})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(v[16], zero) {
		t.Fatal("PCR 16 not extended")
	}
	if err := d.ResetPCR(16); err != nil {
		t.Fatal(err)
	}
	if v, _ = d.ReadPCRs("sha256", []int{16}); !bytes.Equal(v[16], zero) {
		t.Fatal("PCR 16 not reset")
	}
	if err := d.ExtendPCR(16, "sha256", bytes.Repeat([]byte{1}, 32)); err != nil {
		t.Fatal(err)
	}
	in.Reboot(t)
	if v, _ = d.ReadPCRs("sha256", []int{16}); !bytes.Equal(v[16], zero) {
		t.Fatal("PCR 16 survived a reboot")
	}
}

func TestOpenErrors(t *testing.T) {
	for _, tc := range []struct {
		name, device, wantErr string
	}{
		{name: "missing socket", device: "unix:/nonexistent/sock", wantErr: "connect"},
		{name: "bad tcp", device: "tcp:nohost", wantErr: "bad tcp address"},
		{name: "missing device", device: "/nonexistent/tpm", wantErr: "open /nonexistent/tpm"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tpm.Open(tc.device)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestReadEventLogMissing(t *testing.T) {
	b, err := tpm.ReadEventLog(filepath.Join(t.TempDir(), "none"))
	if b != nil || err != nil {
		t.Fatalf("got %v, %v", b, err)
	}
}
