package test

import (
	"context"
	"crypto/x509"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hallmarkid/hallmark/agent/client"
	"github.com/hallmarkid/hallmark/agent/manager"
	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/attestors"
	tpmattestor "github.com/hallmarkid/hallmark/attestors/tpm"
	"github.com/hallmarkid/hallmark/test/testenv"
	"github.com/hallmarkid/hallmark/tpm/tpmtest"
)

// agentSVIDOnDisk reads the SVID and key the agent persisted (what a thief
// with a copy of the agent's data directory holds).
func agentSVIDOnDisk(t *testing.T, ag *testenv.Agent) *x509svid.SVID {
	t.Helper()
	s, err := x509svid.Load(filepath.Join(ag.Dir, "data", "agent_svid.pem"), filepath.Join(ag.Dir, "data", "agent_key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// recordedSerial returns the serial of the agent record of id, "" when the
// server has no record of it.
func recordedSerial(t *testing.T, srv *testenv.Server, id string) string {
	t.Helper()
	resp, err := srv.Admin().ListAgents(context.Background(), &apiv1.ListAgentsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range resp.GetAgents() {
		if a.GetSpiffeId() == id {
			return a.GetX509SvidSerialNumber()
		}
	}
	return ""
}

// garbageCollector sends evidence of a given type that proves nothing.
type garbageCollector struct{ typ string }

func (g garbageCollector) Type() string { return g.typ }
func (garbageCollector) Payload(context.Context, attestors.CollectRequest) ([]byte, error) {
	return []byte(`{"version":1,"ek_public":"AAAA","ak_public":"AAAA"}`), nil
}
func (garbageCollector) Answer(context.Context, []byte) ([]byte, error) { return []byte("{}"), nil }

// renewWith renews over mTLS as svid (through the real server binary) and
// returns the error, unwrapped to the gRPC status.
func renewWith(t *testing.T, srv *testenv.Server, svid *x509svid.SVID, collector attestors.NodeCollector) (*client.AttestResult, error) {
	t.Helper()
	c := nodeClient(t, srv)
	c.SetBundle(bundleOf(t, srv))
	c.SetSVID(svid)
	key, csr, err := manager.NewKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := c.Renew(ctx, collector, key, csr)
	if err != nil {
		return nil, unwrapAll(err)
	}
	return res, nil
}

func bundleOf(t *testing.T, srv *testenv.Server) []*x509.Certificate {
	t.Helper()
	b, err := srv.Admin().GetBundle(context.Background(), &apiv1.GetBundleRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*x509.Certificate
	for _, der := range b.GetX509Authorities() {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// A thief copies an agent's key and SVID; the agent then renews (rotating
// them out). The stolen, superseded SVID is still within its validity, but
// it can do nothing: not renew (which used to hand the thief a current SVID
// and lock the legitimate agent out as "superseded"), not sync, not sign.
// The refusal is audited; the legitimate agent carries on.
func TestSupersededAgentSVIDCannotRenewSyncOrSign(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer(testenv.WithServerHCL(`agent_svid_ttl = "20s"`))
	ag := env.StartAgent(srv, srv.Token())
	const want = "spiffe://example.org/lifecycle/w"
	entryID := srv.CreateEntry(want, ag.ID(), "-selector", uidSelector())
	waitForSVID(t, ag.Addr(), want)

	stolen := agentSVIDOnDisk(t, ag)
	stolenSerial := stolen.Certificates[0].SerialNumber.String()
	testenv.WaitFor(t, 20*time.Second, "the agent to rotate its SVID", func() bool {
		s := recordedSerial(t, srv, ag.ID())
		return s != "" && s != stolenSerial
	})
	if left := time.Until(stolen.Certificates[0].NotAfter); left < 2*time.Second {
		t.Fatalf("stolen SVID expires in %s; the attack needs it still valid", left)
	}

	res, err := renewWith(t, srv, stolen, nil)
	if err == nil {
		t.Fatalf("a superseded agent SVID renewed into %s (serial %s)", res.Certs[0].URIs[0], res.Certs[0].SerialNumber)
	}
	if c := status.Code(err); c != codes.Unauthenticated || !strings.Contains(err.Error(), "superseded") {
		t.Fatalf("renewal with a superseded SVID: %v, want Unauthenticated naming the supersession", err)
	}
	thief := nodeClient(t, srv)
	thief.SetBundle(bundleOf(t, srv))
	thief.SetSVID(stolen)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := thief.Sync(ctx, nil)
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(unwrapAll(err)) != codes.Unauthenticated {
		t.Fatalf("sync with a superseded SVID: %v, want Unauthenticated", err)
	}
	_, csr, _ := manager.NewKeyAndCSR()
	if _, err := thief.BatchSign(ctx, []*apiv1.SVIDRequest{{EntryId: entryID, Csr: csr}}); status.Code(unwrapAll(err)) != codes.Unauthenticated {
		t.Fatalf("signing with a superseded SVID: %v, want Unauthenticated", err)
	}

	// The refusal is audited, naming the agent and the reason.
	testenv.WaitFor(t, 5*time.Second, "the refused renewal in the audit log", func() bool {
		return auditHas(t, srv, "rejected", `"renewal":true`, ag.ID(), "superseded")
	})

	// The legitimate agent is untouched: its record carries its own
	// serial, it renews again, stays healthy and keeps serving.
	var mine string
	testenv.WaitFor(t, 5*time.Second, "the agent record to name the SVID the agent holds", func() bool {
		mine = agentSVIDOnDisk(t, ag).Certificates[0].SerialNumber.String()
		return recordedSerial(t, srv, ag.ID()) == mine
	})
	testenv.WaitFor(t, 25*time.Second, "the agent's next renewal", func() bool {
		s := recordedSerial(t, srv, ag.ID())
		return s != "" && s != mine
	})
	if err := ag.Healthy(); err != nil {
		t.Fatalf("legitimate agent unhealthy after the attack: %v", err)
	}
	waitForSVID(t, ag.Addr(), want)
	if strings.Contains(ag.Log(), "superseded") {
		t.Fatalf("the legitimate agent was told it is superseded:\n%s", ag.Log())
	}
}

// tpmServer starts a server verifying TPM evidence from ca's EKs.
func tpmServer(t *testing.T, env *testenv.Env, ca *tpmtest.CA, extraServer string, more ...testenv.ServerOption) *testenv.Server {
	t.Helper()
	opts := append([]testenv.ServerOption{testenv.WithServerHCL(extraServer), testenv.WithHCL(`
node_attestor "tpm" {
  ek_ca_dir     = "` + ca.WriteDir(t) + `"
  pcrs          = [0, 16]
  quote_timeout = "2s"
}`)}, more...)
	return env.StartServer(opts...)
}

func tpmAgent(t *testing.T, env *testenv.Env, srv *testenv.Server, inst *tpmtest.Instance, opts ...testenv.AgentOption) *testenv.Agent {
	t.Helper()
	return env.StartAgent(srv, "", append([]testenv.AgentOption{testenv.WithAgentTopHCL(`
node_attestor "tpm" {
  device    = "` + inst.Device() + `"
  event_log = "none"
}`)}, opts...)...)
}

// For a TPM agent the same stolen, superseded SVID with garbage evidence
// used to evict the legitimate agent (a failed re-attestation). Now it is
// refused before any evidence is looked at, and nothing changes.
func TestSupersededTPMAgentSVIDGarbageRenewalDoesNotEvict(t *testing.T) {
	tpmtest.Require(t)
	ca := tpmtest.SharedCA(t, "lifecycle")
	inst := tpmtest.Shared(t, "lifecycle", ca).Start(t)
	env := testenv.New(t)
	srv := tpmServer(t, env, ca, `agent_svid_ttl = "20s"`)
	ag := tpmAgent(t, env, srv, inst)
	stolen := agentSVIDOnDisk(t, ag)
	id := stolen.ID.String()
	testenv.WaitFor(t, 20*time.Second, "the agent to rotate its SVID", func() bool {
		s := recordedSerial(t, srv, id)
		return s != "" && s != stolen.Certificates[0].SerialNumber.String()
	})

	_, err := renewWith(t, srv, stolen, garbageCollector{typ: tpmattestor.Type})
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "superseded") {
		t.Fatalf("garbage renewal with a superseded SVID: %v, want Unauthenticated naming the supersession", err)
	}
	testenv.WaitFor(t, 5*time.Second, "the agent record to name the SVID the agent holds", func() bool {
		return recordedSerial(t, srv, id) == agentSVIDOnDisk(t, ag).Certificates[0].SerialNumber.String()
	})
	if strings.Contains(srv.Log(), "Agent evicted") {
		t.Fatalf("the server evicted the agent:\n%s", srv.Log())
	}
	if err := ag.Healthy(); err != nil {
		t.Fatalf("legitimate TPM agent unhealthy after the attack: %v", err)
	}
}

// interruptingCollector answers TPM challenges through the real TPM, but
// can first break the exchange the way a network or a slow TPM does.
type interruptingCollector struct {
	*tpmattestor.Collector
	answer func(ctx context.Context, challenge []byte) ([]byte, error)
}

func (c interruptingCollector) Answer(ctx context.Context, challenge []byte) ([]byte, error) {
	return c.answer(ctx, challenge)
}

// A TPM agent's re-attestation breaks mid-challenge: the connection drops,
// or the answer comes after the quote deadline. No evidence was received,
// so nothing proved the node false: the renewal fails (no SVID), but the
// agent is not evicted and its next renewal succeeds. Evidence that does
// arrive and is false (a wrong activation secret) still evicts.
func TestInterruptedTPMReattestationDoesNotEvict(t *testing.T) {
	tpmtest.Require(t)
	ca := tpmtest.SharedCA(t, "lifecycle")
	inst := tpmtest.Shared(t, "lifecycle", ca).Start(t)
	env := testenv.New(t)
	srv := tpmServer(t, env, ca, "")
	collector, err := tpmattestor.NewCollector(tpmattestor.AgentConfig{Device: inst.Device(), EventLog: "none"}, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { collector.Close() })

	c := nodeClient(t, srv)
	key, csr, _ := manager.NewKeyAndCSR()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := c.Attest(ctx, collector, key, csr)
	if err != nil {
		t.Fatal(err)
	}
	svid := &x509svid.SVID{ID: spiffeIDOf(t, res), Certificates: res.Certs, PrivateKey: key}
	id := svid.ID.String()

	cases := []struct {
		name      string
		answer    func(cancel context.CancelFunc) func(ctx context.Context, challenge []byte) ([]byte, error)
		wantEvict bool
	}{
		{name: "connection dropped mid-challenge", answer: func(cancel context.CancelFunc) func(context.Context, []byte) ([]byte, error) {
			return func(context.Context, []byte) ([]byte, error) {
				cancel()
				return nil, errors.New("test: connection dropped")
			}
		}},
		{name: "answer after the quote deadline", answer: func(context.CancelFunc) func(context.Context, []byte) ([]byte, error) {
			return func(ctx context.Context, ch []byte) ([]byte, error) {
				time.Sleep(2500 * time.Millisecond)
				return collector.Answer(ctx, ch)
			}
		}},
		{name: "wrong activation secret", wantEvict: true, answer: func(context.CancelFunc) func(context.Context, []byte) ([]byte, error) {
			return func(ctx context.Context, ch []byte) ([]byte, error) {
				raw, err := collector.Answer(ctx, ch)
				if err != nil {
					return nil, err
				}
				ans, err := tpmattestor.DecodeAnswer(raw)
				if err != nil {
					return nil, err
				}
				ans.Secret[0] ^= 1
				return tpmattestor.Marshal(ans)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := recordedSerial(t, srv, id)
			if before == "" {
				t.Fatal("the agent has no record before the case")
			}
			rc := nodeClient(t, srv)
			rc.SetBundle(bundleOf(t, srv))
			rc.SetSVID(svid)
			rctx, rcancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer rcancel()
			k, r, _ := manager.NewKeyAndCSR()
			_, err := rc.Renew(rctx, interruptingCollector{Collector: collector, answer: tc.answer(rcancel)}, k, r)
			if err == nil {
				t.Fatal("renewal succeeded")
			}
			time.Sleep(300 * time.Millisecond) // the server finishes its side
			after := recordedSerial(t, srv, id)
			if tc.wantEvict {
				if after != "" {
					t.Fatalf("false evidence (%v) left the agent attested", err)
				}
				return
			}
			// Not evicted, and still naming the SVID the agent holds (the
			// server records its first use of a renewed one).
			if held := svid.Certificates[0].SerialNumber.String(); after != held {
				t.Fatalf("after %q the agent record is %q (was %q, the agent holds %q): %v", tc.name, after, before, held, err)
			}
			// Nothing changed: the agent renews with its current SVID.
			k2, r2, _ := manager.NewKeyAndCSR()
			rctx2, rcancel2 := context.WithTimeout(context.Background(), 20*time.Second)
			defer rcancel2()
			res, err := rc.Renew(rctx2, collector, k2, r2)
			if err != nil {
				t.Fatalf("renewal after %q: %v", tc.name, err)
			}
			svid = &x509svid.SVID{ID: svid.ID, Certificates: res.Certs, PrivateKey: k2}
		})
	}
}

func spiffeIDOf(t *testing.T, res *client.AttestResult) spiffeid.ID {
	t.Helper()
	id, err := x509svid.IDFromCert(res.Certs[0])
	if err != nil {
		t.Fatal(err)
	}
	return id
}
