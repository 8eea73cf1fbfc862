package tpm_test

import (
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	tpmatt "github.com/hallmarkid/hallmark/attestors/tpm"
	"github.com/hallmarkid/hallmark/tpm"
	"github.com/hallmarkid/hallmark/tpm/tpmtest"
)

// windowsRecord returns the AK public, quote and signature of the real
// Windows attestation record.
func windowsRecord(f *testing.F) (ak, quote, sig, log []byte) {
	b, err := os.ReadFile("testdata/windows_gcp_shielded_vm.json")
	if err != nil {
		f.Fatal(err)
	}
	var rec struct {
		AK    struct{ Public []byte }
		Quote struct{ Quote, Signature []byte }
		Log   struct{ Raw []byte }
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		f.Fatal(err)
	}
	return rec.AK.Public, rec.Quote.Quote, rec.Quote.Signature, rec.Log.Raw
}

func FuzzDecodePayload(f *testing.F) {
	ak, _, _, _ := windowsRecord(f)
	good, _ := tpmatt.Marshal(tpmatt.Payload{Version: 1, EKPublic: tpm2.Marshal(tpm2.RSAEKTemplate), AKPublic: ak, EKCert: []byte{0x30, 0}})
	f.Add(good)
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`{"version":1,"ek_public":"AAE=","ak_public":"AAE=","ek_chain":["","",""]}`))
	f.Add([]byte(`{} {}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := tpmatt.DecodePayload(b)
		if err != nil {
			return
		}
		// Whatever decodes must survive the structure checks without panic.
		_, _ = tpmatt.CheckAKPublic(p.AKPublic)
		_, _ = tpmatt.ParseEKCert(p.EKCert)
	})
}

func FuzzDecodeAnswer(f *testing.F) {
	_, quote, sig, _ := windowsRecord(f)
	good, _ := tpmatt.Marshal(tpmatt.Answer{Secret: make([]byte, 32), Quote: quote, Signature: sig, PCRs: []tpmatt.PCRValue{{Index: 0, Value: make([]byte, 32)}}})
	f.Add(good)
	f.Add([]byte(`{"quote":"/1RDRw==","signature":"AAE=","pcrs":[{"index":-1,"value":""}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := tpmatt.DecodeAnswer(b)
		if err != nil {
			return
		}
		_, _, _ = tpmatt.ParseQuote(a.Quote)
	})
}

func FuzzDecodeChallenge(f *testing.F) {
	good, _ := tpmatt.Marshal(tpmatt.Challenge{Nonce: make([]byte, 32), Credential: []byte{1}, Secret: []byte{2}, Bank: "sha256", PCRs: []int{0, 7}})
	f.Add(good)
	f.Add([]byte(`{"nonce":"","pcrs":[99]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = tpmatt.DecodeChallenge(b)
	})
}

func FuzzParseQuote(f *testing.F) {
	_, quote, _, _ := windowsRecord(f)
	f.Add(quote)
	f.Add(quote[:20])
	f.Add([]byte{0xff, 0x54, 0x43, 0x47, 0x80, 0x18})
	f.Fuzz(func(t *testing.T, b []byte) {
		att, info, err := tpmatt.ParseQuote(b)
		if err != nil {
			return
		}
		if att == nil || info == nil {
			t.Fatal("nil quote without error")
		}
		if err := att.Magic.Check(); err != nil {
			t.Fatalf("accepted bad magic: %v", err)
		}
	})
}

func FuzzCheckAKPublic(f *testing.F) {
	ak, _, _, _ := windowsRecord(f)
	f.Add(ak)
	for _, alg := range []tpm.KeyAlg{tpm.ECC, tpm.RSA} {
		tmpl, _ := tpm.AKTemplate(alg)
		f.Add(tpm2.Marshal(tmpl))
	}
	f.Add(tpm2.Marshal(tpm2.ECCEKTemplate))
	f.Fuzz(func(t *testing.T, b []byte) {
		name, err := tpmatt.CheckAKPublic(b)
		if err == nil && len(name) < 34 {
			t.Fatalf("accepted AK with name of %d bytes", len(name))
		}
	})
}

func FuzzParseEKCert(f *testing.F) {
	ca, err := tpmtest.NewCA("fuzz")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ca.Cert.Raw)
	f.Add(ca.Cert.Raw[:100])
	f.Add([]byte{0x30, 0x82, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := tpmatt.ParseEKCert(b)
		if err == nil && len(c.UnhandledCriticalExtensions) != 0 {
			t.Fatal("accepted a certificate with unhandled critical extensions")
		}
	})
}

func FuzzReplayEventLog(f *testing.F) {
	_, _, _, win := windowsRecord(f)
	f.Add(win[:4096])
	for _, name := range []string{"crypto_agile_eventlog", "sb_cert_eventlog"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[:min(len(b), 8192)])
	}
	f.Add(syntheticLog(16, []byte("a"), []byte("b")))
	f.Add(syntheticLog(7))
	pcrs := map[int][]byte{}
	for i := 0; i < 8; i++ {
		pcrs[i] = make([]byte, 32)
	}
	pcrs[16] = make([]byte, 32)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = tpmatt.ReplayEventLog(b, crypto.SHA256, pcrs)
	})
}

// FuzzParseCRLFile: no panic on any file of ek_crl_dir, and every CRL it
// returns re-parses from its own bytes.
func FuzzParseCRLFile(f *testing.F) {
	ca := tpmtest.SharedCA(f, "fuzz")
	now := time.Now()
	good := ca.CRL(f, 1, now, now.Add(time.Hour), big.NewInt(7))
	blk, _ := pem.Decode(good)
	f.Add(good)
	f.Add(blk.Bytes)
	f.Add(append(append([]byte{}, good...), good...))
	f.Add(append(append([]byte{}, good...), "junk"...))
	f.Add(ca.CertPEM)
	f.Add([]byte("-----BEGIN X509 CRL-----\n-----END X509 CRL-----\n"))
	f.Add([]byte{0x30, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		crls, err := tpmatt.ParseCRLFile(b)
		if err != nil {
			return
		}
		if len(crls) == 0 {
			t.Fatal("no CRL and no error")
		}
		for _, c := range crls {
			if _, err := x509.ParseRevocationList(c.Raw); err != nil {
				t.Fatalf("returned a CRL that does not re-parse: %v", err)
			}
		}
	})
}
