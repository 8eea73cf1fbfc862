package tpm

import (
	"crypto"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"

	tpmdev "github.com/hallmarkid/hallmark/tpm"
)

// TestRealWindowsRecord checks quote → PCRs → event-log replay end to end
// on a real machine's attestation record (SHA-1 bank, empty nonce).
func TestRealWindowsRecord(t *testing.T) {
	var rec struct {
		AK    struct{ Public []byte }
		Quote struct {
			Quote, Signature []byte
		}
		Log struct {
			PCRs []struct {
				Index     int
				Digest    []byte
				DigestAlg int
			}
			Raw []byte
		}
	}
	b, err := os.ReadFile("testdata/windows_gcp_shielded_vm.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	// This AK signs with SHA-1: the verifier refuses it for attestation...
	if _, err := parseAKPublic(rec.AK.Public); err == nil || !strings.Contains(err.Error(), "weaker than SHA-256") {
		t.Fatalf("SHA-1 AK: err = %v", err)
	}
	// ...but its structures must still parse and verify on real data.
	pub, err := unmarshalExact[tpm2.TPMTPublic](rec.AK.Public, "AK public")
	if err != nil {
		t.Fatal(err)
	}
	key, err := publicKey(pub, "AK public")
	if err != nil {
		t.Fatal(err)
	}
	parms, _ := pub.Parameters.RSADetail()
	scheme, err := parms.Scheme.Details.RSASSA()
	if err != nil {
		t.Fatal(err)
	}
	ak := &akKey{pub: pub, key: key, signHash: scheme.HashAlg}
	att, info, err := ParseQuote(rec.Quote.Quote)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifySignature(ak, rec.Quote.Quote, rec.Quote.Signature); err != nil {
		t.Fatal(err)
	}
	if len(att.ExtraData.Buffer) != 0 {
		t.Fatalf("nonce %x", att.ExtraData.Buffer)
	}
	sel := info.PCRSelect.PCRSelections
	if len(sel) != 1 || tpmdev.BankName(sel[0].Hash) != "sha1" {
		t.Fatalf("selection %+v", sel)
	}
	pcrs := map[int][]byte{}
	for _, p := range rec.Log.PCRs {
		if crypto.Hash(p.DigestAlg) == crypto.SHA1 {
			pcrs[p.Index] = p.Digest
		}
	}
	h, _ := ak.signHash.Hash()
	d := h.New()
	for _, i := range tpmdev.SelectedPCRs(sel[0].PCRSelect) {
		d.Write(pcrs[i])
	}
	if got := d.Sum(nil); string(got) != string(info.PCRDigest.Buffer) {
		t.Fatal("PCR digest mismatch on real data")
	}
	res, err := replayEventLog(rec.Log.Raw, crypto.SHA1, pcrs)
	if err != nil {
		t.Fatal(err)
	}
	if res.secureBoot == nil {
		t.Fatalf("secure boot state unknown: %v", res.secureBootErr)
	}
	t.Logf("windows record: %d events verified, secure boot %v", len(res.events), *res.secureBoot)
}
