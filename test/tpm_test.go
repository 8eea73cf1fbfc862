package test

import (
	"context"
	"crypto/sha256"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/hallmarkid/hallmark/test/testenv"
	"github.com/hallmarkid/hallmark/tpm"
	"github.com/hallmarkid/hallmark/tpm/tpmtest"
)

// The story of a TPM-rooted node: it attests with its swtpm (EK chain,
// credential activation, PCR quote), is registered by its PCR state
// through a node entry, its workload gets an SVID; then PCR 16 leaves
// policy, the next renewal is refused naming the PCR, the agent's SVID
// lapses and the workload's SVID with it.
func TestTPMNodeAttestationAndContinuousReattestation(t *testing.T) {
	tpmtest.Require(t)
	ca := tpmtest.SharedCA(t, "e2e")
	inst := tpmtest.Shared(t, "e2e", ca).Start(t)
	zero := strings.Repeat("0", 64)

	env := testenv.New(t)
	srv := env.StartServer(testenv.WithServerHCL(`agent_svid_ttl = "3s"`), testenv.WithHCL(`
node_attestor "tpm" {
  ek_ca_dir         = "`+ca.WriteDir(t)+`"
  pcrs              = [0, 16]
  pcr_policy {
    pcr    = 16
    values = ["`+zero+`"]
  }
}`))

	// The operator learns the EK hash with the agent's CLI.
	out, err := env.CLI("hallmark-agent", "tpm", "ek-hash", "-device", inst.Device())
	if err != nil {
		t.Fatalf("tpm ek-hash: %v\n%s", err, out)
	}
	ekHash := strings.TrimSpace(out)
	if len(ekHash) != 64 {
		t.Fatalf("ek-hash printed %q", out)
	}
	info, err := env.CLI("hallmark-agent", "tpm", "info", "-device", inst.Device())
	tpmInfoOut := info
	if err != nil || !strings.Contains(info, ekHash) || !strings.Contains(info, "sha256") {
		t.Fatalf("tpm info: %v\n%s", err, info)
	}

	ag := env.StartAgent(srv, "", testenv.WithAgentTopHCL(`
node_attestor "tpm" {
  device    = "`+inst.Device()+`"
  event_log = "none"
}`))
	agentID := "spiffe://example.org/agent/tpm/" + ekHash
	list := srv.MustCLI("agent", "list")
	for _, want := range []string{agentID, "tpm:ek-hash:" + ekHash, "tpm:pcr:sha256:16:" + zero, "Can re-attest     : true"} {
		if !strings.Contains(list, want) {
			t.Fatalf("agent list lacks %q:\n%s", want, list)
		}
	}

	// tpm info prints the manufacturer selector the server derives.
	mfr := regexp.MustCompile(`tpm:manufacturer:[0-9A-F]{8}`).FindString(list)
	if mfr == "" || !strings.Contains(tpmInfoOut, "Selector:          "+mfr+" ") {
		t.Fatalf("agent list names %q; tpm info should print the same:\n%s", mfr, tpmInfoOut)
	}
	// Each server log line names the attestor once (the wiring adds
	// attestor=tpm; the verifier must not add it again).
	for _, line := range strings.Split(srv.Log(), "\n") {
		if n := strings.Count(line, "attestor=tpm"); n > 1 {
			t.Fatalf("attestor=tpm %d times in one log line: %s", n, line)
		}
	}
	if !strings.Contains(srv.Log(), "tpm attestation accepted") {
		t.Fatalf("no tpm attestation line in the server log:\n%s", srv.Log())
	}

	// Register by measured state: every agent whose PCR 16 is in policy.
	srv.MustCLI("entry", "create", "-node", "-spiffeID", "spiffe://example.org/nodes/pcr16-clean", "-selector", "tpm:pcr:sha256:16:"+zero)
	const want = "spiffe://example.org/tpm-workload"
	srv.CreateEntry(want, "spiffe://example.org/nodes/pcr16-clean", "-selector", uidSelector(), "-x509SVIDTTL", "3")
	waitForSVID(t, ag.Addr(), want)

	// Renewals (every 1.5 s with a 3 s agent SVID) re-attest with a fresh
	// quote while the state is good.
	serial := agentSerial(t, srv)
	testenv.WaitFor(t, 10*time.Second, "a re-attested renewal", func() bool { return agentSerial(t, srv) != serial })

	// The machine's state changes.
	d, err := tpm.Open(inst.Device())
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("unexpected boot component"))
	if err := d.ExtendPCR(16, "sha256", digest[:]); err != nil {
		t.Fatal(err)
	}
	d.Close()

	testenv.WaitFor(t, 15*time.Second, "renewal refused naming PCR 16", func() bool {
		return strings.Contains(srv.Log(), "Attestation rejected") && strings.Contains(srv.Log(), "PCR 16")
	})
	// The workload loses its SVID once the last one expires.
	testenv.WaitFor(t, 20*time.Second, "workload SVID to lapse", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		_, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr(ag.Addr()))
		return err != nil
	})
	testenv.WaitFor(t, 20*time.Second, "agent unhealthy without a valid SVID", func() bool { return ag.Healthy() != nil })
}

func agentSerial(t *testing.T, srv *testenv.Server) string {
	t.Helper()
	for _, line := range strings.Split(srv.MustCLI("agent", "list"), "\n") {
		if v, ok := strings.CutPrefix(line, "Serial number     : "); ok {
			return v
		}
	}
	t.Fatal("no agent serial")
	return ""
}
