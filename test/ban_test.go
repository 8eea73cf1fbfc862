package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/agent/manager"
	tpmattestor "github.com/hallmarkid/hallmark/attestors/tpm"
	"github.com/hallmarkid/hallmark/test/testenv"
	"github.com/hallmarkid/hallmark/tpm/tpmtest"
)

// agentJSON is `agent show -output json`: SPIRE's shape.
type agentJSON struct {
	ID struct {
		TrustDomain string `json:"trust_domain"`
		Path        string `json:"path"`
	} `json:"id"`
	AttestationType      string `json:"attestation_type"`
	X509SVIDSerialNumber string `json:"x509svid_serial_number"`
	X509SVIDExpiresAt    string `json:"x509svid_expires_at"`
	Selectors            []struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	} `json:"selectors"`
	Banned      bool `json:"banned"`
	CanReattest bool `json:"can_reattest"`
}

func showAgent(t *testing.T, srv *testenv.Server, id string) agentJSON {
	t.Helper()
	var a agentJSON
	out := srv.MustCLI("agent", "show", "-spiffeID", id, "-output", "json")
	if err := json.Unmarshal([]byte(out), &a); err != nil {
		t.Fatalf("agent show -output json: %v\n%s", err, out)
	}
	return a
}

// ready returns the agent's /ready status code and body.
func ready(t *testing.T, addr string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The difference between evict and ban, with a TPM agent (which can
// re-attest). Evict deletes the agent's record: the agent must attest
// again, and a TPM agent does so at once, with fresh evidence. Ban keeps
// the record, marked banned: the agent's streams end, its re-attestation
// is refused, it reports not ready (healthcheck and /ready, naming the
// reason) — until an operator evicts the banned agent, which deletes the
// record (unban), and the agent attests again by itself.
func TestEvictVersusBanOfTPMAgent(t *testing.T) {
	tpmtest.Require(t)
	ca := tpmtest.SharedCA(t, "lifecycle")
	inst := tpmtest.Shared(t, "lifecycle", ca).Start(t)
	env := testenv.New(t)
	srv := tpmServer(t, env, ca, "")
	metrics := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	ag := tpmAgent(t, env, srv, inst, testenv.WithAgentTopHCL(`telemetry { listen_address = "`+metrics+`" }`))
	id := agentSVIDOnDisk(t, ag).ID.String()
	const want = "spiffe://example.org/lifecycle/tpm-workload"
	srv.CreateEntry(want, id, "-selector", uidSelector())
	waitForSVID(t, ag.Addr(), want)

	a := showAgent(t, srv, id)
	if a.ID.TrustDomain != "example.org" || "spiffe://example.org"+a.ID.Path != id || a.AttestationType != "tpm" || !a.CanReattest ||
		a.Banned || a.X509SVIDSerialNumber == "" || a.X509SVIDExpiresAt == "" || len(a.Selectors) == 0 {
		t.Fatalf("agent show -output json: %+v", a)
	}
	if out := srv.MustCLI("agent", "count"); !strings.Contains(out, "1 attested agent") {
		t.Fatalf("agent count: %q", out)
	}

	// Evict: the TPM agent attests again by itself, with fresh evidence.
	before := recordedSerial(t, srv, id)
	if out := srv.MustCLI("agent", "evict", "-spiffeID", id); !strings.Contains(out, "Agent evicted successfully") {
		t.Fatalf("agent evict: %q", out)
	}
	testenv.WaitFor(t, 20*time.Second, "the evicted TPM agent to attest again", func() bool {
		s := recordedSerial(t, srv, id)
		return s != "" && s != before
	})
	testenv.WaitFor(t, 10*time.Second, "the re-attested agent healthy", func() bool { return ag.Healthy() == nil })
	waitForSVID(t, ag.Addr(), want)

	// Ban: sticky.
	if out := srv.MustCLI("agent", "ban", "-spiffeID", id); !strings.Contains(out, "Agent banned successfully") {
		t.Fatalf("agent ban: %q", out)
	}
	if a := showAgent(t, srv, id); !a.Banned {
		t.Fatalf("banned agent shows %+v", a)
	}
	if out := srv.MustCLI("agent", "show", "-spiffeID", id); !strings.Contains(out, "Banned            : true") {
		t.Fatalf("agent show of a banned agent:\n%s", out)
	}
	if out := srv.MustCLI("agent", "list", "-banned", "true"); !strings.Contains(out, id) {
		t.Fatalf("agent list -banned true:\n%s", out)
	}
	if out := srv.MustCLI("agent", "count", "-banned", "false"); !strings.Contains(out, "0 attested agents") {
		t.Fatalf("agent count -banned false: %q", out)
	}
	testenv.WaitFor(t, 15*time.Second, "the banned agent's re-attestation refused", func() bool {
		return auditHas(t, srv, "rejected", id, "banned")
	})
	testenv.WaitFor(t, 10*time.Second, "the banned agent not ready", func() bool {
		out, err := ag.CLI("healthcheck", "-socketPath", ag.SocketPath)
		return err != nil && strings.Contains(out, "banned")
	})
	if code, body := ready(t, metrics); code == http.StatusOK || !strings.Contains(body, "banned") {
		t.Fatalf("/ready of a banned agent: %d %q", code, body)
	}
	time.Sleep(2 * time.Second)
	if a := showAgent(t, srv, id); !a.Banned {
		t.Fatalf("the ban did not stick: %+v", a)
	}

	// Evicting a banned agent deletes its record: the ban is lifted and the
	// agent attests again by itself.
	srv.MustCLI("agent", "evict", "-spiffeID", id)
	testenv.WaitFor(t, 45*time.Second, "the unbanned agent to attest again", func() bool {
		return recordedSerial(t, srv, id) != ""
	})
	if a := showAgent(t, srv, id); a.Banned {
		t.Fatalf("re-attested after unban but still banned: %+v", a)
	}
	testenv.WaitFor(t, 10*time.Second, "the unbanned agent ready", func() bool {
		code, _ := ready(t, metrics)
		return code == http.StatusOK && ag.Healthy() == nil
	})
	waitForSVID(t, ag.Addr(), want)
}

// An agent whose attestor cannot re-attest (join token) is evicted: it
// reports not ready, naming the eviction, instead of staying healthy until
// its SVID expires an hour later.
func TestEvictedJoinTokenAgentNotReady(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer()
	metrics := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	ag := env.StartAgent(srv, srv.Token(), testenv.WithAgentTopHCL(`telemetry { listen_address = "`+metrics+`" }`))
	srv.MustCLI("agent", "evict", "-spiffeID", ag.ID())
	testenv.WaitFor(t, 10*time.Second, "the evicted agent not ready", func() bool {
		out, err := ag.CLI("healthcheck", "-socketPath", ag.SocketPath)
		return err != nil && strings.Contains(out, "evicted")
	})
	if code, body := ready(t, metrics); code == http.StatusOK || !strings.Contains(body, "evicted") {
		t.Fatalf("/ready of an evicted agent: %d %q", code, body)
	}
	if out, err := srv.CLI("agent", "ban", "-spiffeID", ag.ID()); err == nil || !strings.Contains(out, "not found") {
		t.Fatalf("ban of an unknown agent: err=%v %q", err, out)
	}
}

// agent purge deletes agents whose SVID expired more than -expiredFor ago,
// among those that can re-attest (SPIRE's rule: deleting a trust-on-first-
// use agent's record would let the same evidence attest again), never a
// banned one (that would lift the ban).
func TestAgentPurge(t *testing.T) {
	tpmtest.Require(t)
	ca := tpmtest.SharedCA(t, "lifecycle")
	env := testenv.New(t)
	srv := tpmServer(t, env, ca, `agent_svid_ttl = "2s"`, testenv.WithHCL(`node_attestor "join_token" {}`))
	attest := func(name string) string {
		inst := tpmtest.Shared(t, name, ca).Start(t)
		col, err := tpmattestor.NewCollector(tpmattestor.AgentConfig{Device: inst.Device(), EventLog: "none"}, t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer col.Close()
		key, csr, _ := manager.NewKeyAndCSR()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		res, err := nodeClient(t, srv).Attest(ctx, col, key, csr)
		if err != nil {
			t.Fatal(err)
		}
		return spiffeIDOf(t, res).String()
	}
	expired, banned := attest("lifecycle"), attest("lifecycle-2")
	srv.MustCLI("agent", "ban", "-spiffeID", banned)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tokRes, _, err := attestWithToken(ctx, nodeClient(t, srv), srv.Token())
	if err != nil {
		t.Fatal(err)
	}
	tofu := spiffeIDOf(t, tokRes).String()
	time.Sleep(3500 * time.Millisecond) // every SVID expired over a second ago

	if out := srv.MustCLI("agent", "purge", "-expiredFor", "1h"); !strings.Contains(out, "No agents to purge.") {
		t.Fatalf("agent purge -expiredFor 1h:\n%s", out)
	}
	out := srv.MustCLI("agent", "purge", "-expiredFor", "1s", "-dryRun")
	if !strings.Contains(out, "Found 1 expired agent") || !strings.Contains(out, expired) || strings.Contains(out, banned) || strings.Contains(out, tofu) {
		t.Fatalf("agent purge -dryRun:\n%s", out)
	}
	if recordedSerial(t, srv, expired) == "" {
		t.Fatal("-dryRun deleted the agent")
	}
	var res struct {
		Expired []struct {
			AgentID string `json:"agent_id"`
			Deleted bool   `json:"deleted"`
			Error   string `json:"error"`
		} `json:"expired_agents"`
	}
	out = srv.MustCLI("agent", "purge", "-expiredFor", "1s", "-output", "json")
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Expired) != 1 || res.Expired[0].AgentID != expired || !res.Expired[0].Deleted {
		t.Fatalf("agent purge -output json: %v\n%s", err, out)
	}
	if recordedSerial(t, srv, expired) != "" || recordedSerial(t, srv, banned) == "" || recordedSerial(t, srv, tofu) == "" {
		t.Fatalf("after purge:\n%s", srv.MustCLI("agent", "list"))
	}
	testenv.WaitFor(t, 5*time.Second, "the purge in the audit log", func() bool {
		recs := readAudit(t, filepath.Join(srv.Dir, "data", "audit.log"))
		return find(recs, map[string]any{"kind": "admin", "action": "agent_purge", "agent_id": expired}) != nil &&
			find(recs, map[string]any{"kind": "admin", "action": "agent_ban", "agent_id": banned}) != nil
	})
}
