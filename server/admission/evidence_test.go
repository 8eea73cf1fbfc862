package admission_test

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/attestors/tpm"
	"github.com/hallmarkid/hallmark/server/admission"
)

// The default pre-authentication message limit is sized from real
// evidence: the largest attestation message is a TPM challenge answer
// carrying the machine's measured-boot log. Built here from every real
// log we hold, with a full answer around it (24 SHA-256 PCRs, an RSA-2048
// quote signature), it must fit with a margin of at least 8×.
func TestDefaultMessageLimitFitsRealEvidence(t *testing.T) {
	dir := filepath.Join("..", "..", "attestors", "tpm", "testdata")
	logs := map[string][]byte{}
	for _, name := range []string{"crypto_agile_eventlog", "sb_cert_eventlog",
		"ubuntu_2104_shielded_vm_no_secure_boot_eventlog", "coreos_36_shielded_vm_no_secure_boot_eventlog"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		logs[name] = b
	}
	var rec struct{ Log struct{ Raw string } }
	b, err := os.ReadFile(filepath.Join(dir, "windows_gcp_shielded_vm.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	if logs["windows_gcp_shielded_vm"], err = base64.StdEncoding.DecodeString(rec.Log.Raw); err != nil {
		t.Fatal(err)
	}

	largest := 0
	for name, log := range logs {
		ans := tpm.Answer{Secret: make([]byte, 32), Quote: make([]byte, 145), Signature: make([]byte, 6+256), EventLog: log}
		for i := range 24 {
			ans.PCRs = append(ans.PCRs, tpm.PCRValue{Index: i, Value: make([]byte, 32)})
		}
		raw, err := tpm.Marshal(ans)
		if err != nil {
			t.Fatal(err)
		}
		size := proto.Size(&apiv1.AttestRequest{Step: &apiv1.AttestRequest_ChallengeResponse{ChallengeResponse: raw}})
		t.Logf("%-50s event log %6d B → attestation message %6d B", name, len(log), size)
		largest = max(largest, size)
	}
	t.Logf("largest real attestation message %d B; default limit %d B (%.1f×)", largest, admission.DefaultMaxMessageSize,
		float64(admission.DefaultMaxMessageSize)/float64(largest))
	if admission.DefaultMaxMessageSize < 8*largest {
		t.Fatalf("default limit %d B is less than 8× the largest real attestation message (%d B)", admission.DefaultMaxMessageSize, largest)
	}
}
