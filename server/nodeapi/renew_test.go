package nodeapi_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
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
	"github.com/hallmarkid/hallmark/server/datastore"
	"github.com/hallmarkid/hallmark/server/nodeapi"
	"github.com/hallmarkid/hallmark/server/nodeapi/nodeapitest"
)

// testVerifier is a continuous-attestation verifier ("test", the type of
// nodeapitest agents) whose verdict each test sets.
type testVerifier struct {
	calls  atomic.Int32
	mu     sync.Mutex // guards verify
	verify func(ctx context.Context, req attestors.VerifyRequest) (attestors.Result, error)
}

func (*testVerifier) Type() string                    { return "test" }
func (*testVerifier) ReattestInterval() time.Duration { return 0 }
func (v *testVerifier) Verify(ctx context.Context, req attestors.VerifyRequest) (attestors.Result, error) {
	v.calls.Add(1)
	v.mu.Lock()
	f := v.verify
	v.mu.Unlock()
	return f(ctx, req)
}

func (v *testVerifier) set(f func(ctx context.Context, req attestors.VerifyRequest) (attestors.Result, error)) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.verify = f
}

// accept returns a verdict accepting the agent the request names.
func accept(ctx context.Context, req attestors.VerifyRequest) (attestors.Result, error) {
	return attestors.Result{AgentID: req.CurrentID, CanReattest: true}, nil
}

// testCollector sends fixed evidence and answers challenges with answer.
type testCollector struct {
	answer func(ctx context.Context, challenge []byte) ([]byte, error)
}

func (testCollector) Type() string { return "test" }
func (testCollector) Payload(context.Context, attestors.CollectRequest) ([]byte, error) {
	return []byte("evidence"), nil
}
func (c testCollector) Answer(ctx context.Context, ch []byte) ([]byte, error) {
	if c.answer == nil {
		return []byte("answer"), nil
	}
	return c.answer(ctx, ch)
}

// auditLog records audit records.
type auditLog struct {
	mu   sync.Mutex // guards recs
	recs []map[string]any
}

func (a *auditLog) Record(_ context.Context, kind string, fields map[string]any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	rec := map[string]any{"kind": kind}
	for k, v := range fields {
		rec[k] = v
	}
	a.recs = append(a.recs, rec)
}

// rejected returns the rejected attestation records naming agentID.
func (a *auditLog) rejected(agentID string) []map[string]any {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []map[string]any
	for _, r := range a.recs {
		if r["kind"] == "attestation" && r["result"] == "rejected" && r["agent_id"] == agentID {
			out = append(out, r)
		}
	}
	return out
}

func newRenewEnv(t *testing.T) (*nodeapitest.Env, *testVerifier, *auditLog) {
	t.Helper()
	v, audit := &testVerifier{verify: accept}, &auditLog{}
	e := nodeapitest.New(t, func(c *nodeapi.Config) {
		c.Verifiers = append(c.Verifiers, v)
		c.Audit = audit
	})
	return e, v, audit
}

func renew(t *testing.T, e *nodeapitest.Env, svid *x509svid.SVID, col attestors.NodeCollector) (*client.AttestResult, error) {
	t.Helper()
	c := agentClient(t, e, &nodeapitest.Agent{ID: svid.ID, SVID: svid})
	key, csr, err := manager.NewKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Renew(ctx, col, key, csr)
}

func serialOf(t *testing.T, e *nodeapitest.Env, id spiffeid.ID) string {
	t.Helper()
	rec, err := e.Store.GetAgent(context.Background(), id.String())
	if errors.Is(err, datastore.ErrNotFound) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return rec.SerialNumber
}

func grpcCode(err error) codes.Code {
	for err != nil {
		if s, ok := status.FromError(err); ok {
			return s.Code()
		}
		err = errors.Unwrap(err)
	}
	return codes.OK
}

// An agent rotated its SVID; its old one (a thief's copy, or a workload
// SVID naming the agent) can do nothing: not renew — before any evidence
// is looked at — nor sync, nor sign. The refusal is audited and the
// agent's record is untouched.
func TestRenewAgentRefusesAnythingButTheRecordedSVID(t *testing.T) {
	e, v, audit := newRenewEnv(t)
	a := e.NewAgent("a")
	current := e.NewSVID(a.ID)
	rec, err := e.Store.GetAgent(context.Background(), a.ID.String())
	if err != nil {
		t.Fatal(err)
	}
	rec.SerialNumber = current.Certificates[0].SerialNumber.String()
	if err := e.Store.UpdateAgent(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	e.Put(nodeapitest.Entry(a, "w"))
	workload := e.NewSVID(a.ID) // signed for the agent's ID, but never recorded

	for _, tc := range []struct {
		name string
		svid *x509svid.SVID
	}{
		{name: "superseded agent SVID", svid: a.SVID},
		{name: "workload SVID naming the agent", svid: workload},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := v.calls.Load()
			_, err := renew(t, e, tc.svid, testCollector{})
			if grpcCode(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "superseded") {
				t.Fatalf("renewal: %v, want Unauthenticated (superseded)", err)
			}
			if v.calls.Load() != before {
				t.Fatal("the verifier ran for a caller whose SVID is not the agent's")
			}
			if got := serialOf(t, e, a.ID); got != rec.SerialNumber {
				t.Fatalf("record serial %q after the attempt, want %q", got, rec.SerialNumber)
			}
			c := agentClient(t, e, &nodeapitest.Agent{ID: a.ID, SVID: tc.svid})
			s, cancel := openSync(t, c, nil)
			defer cancel()
			if _, err := s.Recv(); grpcCode(err) != codes.Unauthenticated {
				t.Fatalf("sync: %v, want Unauthenticated", err)
			}
			_, csr, _ := manager.NewKeyAndCSR()
			if _, err := c.BatchSign(context.Background(), []*apiv1.SVIDRequest{{EntryId: "w", Csr: csr}}); grpcCode(err) != codes.Unauthenticated {
				t.Fatalf("sign: %v, want Unauthenticated", err)
			}
		})
	}
	recs := audit.rejected(a.ID.String())
	if len(recs) != 2 || recs[0]["renewal"] != true || !strings.Contains(fmt.Sprint(recs[0]["reason"]), "superseded") {
		t.Fatalf("audit records of the refusals: %v", recs)
	}

	// The agent itself renews.
	if _, err := renew(t, e, current, testCollector{}); err != nil {
		t.Fatalf("renewal with the recorded SVID: %v", err)
	}
}

// A failed re-attestation evicts only when the evidence arrived and proved
// false; anything else refuses the renewal and changes nothing, and the
// agent's next renewal succeeds.
func TestFailedReattestationEvictsOnlyOnProof(t *testing.T) {
	e, v, audit := newRenewEnv(t)
	other := spiffeid.RequireFromSegments(nodeapitest.TrustDomain, "agent", "test", "someone-else")
	for i, tc := range []struct {
		name      string
		verify    func(ctx context.Context, req attestors.VerifyRequest) (attestors.Result, error)
		answer    func(ctx context.Context, ch []byte) ([]byte, error)
		wantEvict bool
	}{
		{name: "bad quote", wantEvict: true, verify: func(context.Context, attestors.VerifyRequest) (attestors.Result, error) {
			return attestors.Result{}, attestors.Rejected(errors.New("quote: bad signature"))
		}},
		{name: "evidence of another node", wantEvict: true, verify: func(context.Context, attestors.VerifyRequest) (attestors.Result, error) {
			return attestors.Result{AgentID: other, CanReattest: true}, nil
		}},
		{name: "connection dropped mid-challenge", verify: func(ctx context.Context, req attestors.VerifyRequest) (attestors.Result, error) {
			if _, err := req.Challenge(ctx, []byte("nonce")); err != nil {
				return attestors.Result{}, attestors.Rejected(fmt.Errorf("challenge: %w", err)) // even if a verifier says so
			}
			return attestors.Result{}, errors.New("unreachable")
		}, answer: func(context.Context, []byte) ([]byte, error) { return nil, errors.New("test: dropped") }},
		{name: "timeout mid-challenge", verify: func(ctx context.Context, req attestors.VerifyRequest) (attestors.Result, error) {
			cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			defer cancel()
			_, err := req.Challenge(cctx, []byte("nonce"))
			return attestors.Result{}, fmt.Errorf("challenge: %w", err)
		}, answer: func(ctx context.Context, _ []byte) ([]byte, error) {
			time.Sleep(200 * time.Millisecond)
			return []byte("late"), nil
		}},
		{name: "unclassified failure (upstream down)", verify: func(context.Context, attestors.VerifyRequest) (attestors.Result, error) {
			return attestors.Result{}, errors.New("sts: connection refused")
		}},
		{name: "no evidence", verify: func(context.Context, attestors.VerifyRequest) (attestors.Result, error) {
			return attestors.Result{}, attestors.NoEvidence(errors.New("the TPM did not answer"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := e.NewAgent(fmt.Sprint("agent-", i))
			v.set(tc.verify)
			n := len(audit.rejected(a.ID.String()))
			// The client may give up first (a dropped connection): then
			// its own error is what it sees.
			if _, err := renew(t, e, a.SVID, testCollector{answer: tc.answer}); err == nil ||
				(grpcCode(err) != codes.PermissionDenied && !strings.Contains(err.Error(), "test: dropped")) {
				t.Fatalf("renewal: %v, want refused", err)
			}
			// The server may finish after the client gave up.
			deadline := time.Now().Add(5 * time.Second)
			for len(audit.rejected(a.ID.String())) == n && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			recs := audit.rejected(a.ID.String())
			if len(recs) != n+1 {
				t.Fatalf("%d rejected attestation records, want %d", len(recs), n+1)
			}
			evicted := serialOf(t, e, a.ID) == ""
			if evicted != tc.wantEvict || (recs[n]["evicted"] == true) != tc.wantEvict {
				t.Fatalf("evicted=%v (audit %v), want %v", evicted, recs[n]["evicted"], tc.wantEvict)
			}
			if evicted {
				return
			}
			v.set(accept)
			if _, err := renew(t, e, a.SVID, testCollector{}); err != nil {
				t.Fatalf("the next renewal: %v", err)
			}
		})
	}
}

// A banned agent gets nothing: not renewal, not a stream, not signing, not
// a fresh attestation; its open stream ends naming the ban.
func TestBannedAgentGetsNothing(t *testing.T) {
	e, v, _ := newRenewEnv(t)
	a := e.NewAgent("banned")
	e.Put(nodeapitest.Entry(a, "w"))
	c := agentClient(t, e, a)
	s, cancel := openSync(t, c, nil)
	defer cancel()
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}

	if err := e.Store.BanAgent(context.Background(), a.ID.String()); err != nil {
		t.Fatal(err)
	}
	e.Server.AgentEvicted(a.ID.String())
	if _, err := s.Recv(); grpcCode(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "banned") {
		t.Fatalf("open stream after the ban: %v, want PermissionDenied naming the ban", err)
	}
	if _, err := renew(t, e, a.SVID, testCollector{}); grpcCode(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "banned") {
		t.Fatalf("renewal: %v, want PermissionDenied (banned)", err)
	}
	s2, cancel2 := openSync(t, c, nil)
	defer cancel2()
	if _, err := s2.Recv(); grpcCode(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "banned") {
		t.Fatalf("new stream: %v, want PermissionDenied (banned)", err)
	}
	_, csr, _ := manager.NewKeyAndCSR()
	if _, err := c.BatchSign(context.Background(), []*apiv1.SVIDRequest{{EntryId: "w", Csr: csr}}); grpcCode(err) != codes.PermissionDenied {
		t.Fatalf("sign: %v, want PermissionDenied", err)
	}

	// Attesting afresh with evidence of the banned agent.
	v.set(func(context.Context, attestors.VerifyRequest) (attestors.Result, error) {
		return attestors.Result{AgentID: a.ID, CanReattest: true}, nil
	})
	fresh, err := client.New(client.Config{Address: e.Addr, TrustDomain: nodeapitest.TrustDomain, Bundle: e.CA.Bundle()})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	key, csr2, _ := manager.NewKeyAndCSR()
	if _, err := fresh.Attest(context.Background(), testCollector{}, key, csr2); grpcCode(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "banned") {
		t.Fatalf("fresh attestation of a banned agent: %v, want PermissionDenied (banned)", err)
	}
	rec, err := e.Store.GetAgent(context.Background(), a.ID.String())
	if err != nil || !rec.Banned || rec.SerialNumber != a.SVID.Certificates[0].SerialNumber.String() {
		t.Fatalf("banned record after the attempts: %+v (err %v)", rec, err)
	}

	// Deleting the record lifts the ban.
	if err := e.Store.DeleteAgent(context.Background(), a.ID.String()); err != nil {
		t.Fatal(err)
	}
	if _, err := fresh.Attest(context.Background(), testCollector{}, key, csr2); err != nil {
		t.Fatalf("attestation after the ban was lifted: %v", err)
	}
}

// renewKeep renews as svid and returns the new SVID.
func renewKeep(t *testing.T, e *nodeapitest.Env, svid *x509svid.SVID) *x509svid.SVID {
	t.Helper()
	c := agentClient(t, e, &nodeapitest.Agent{ID: svid.ID, SVID: svid})
	key, csr, err := manager.NewKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.Renew(ctx, testCollector{}, key, csr)
	if err != nil {
		t.Fatalf("renewal: %v", err)
	}
	return &x509svid.SVID{ID: svid.ID, Certificates: res.Certs, PrivateKey: key}
}

func syncErr(t *testing.T, e *nodeapitest.Env, svid *x509svid.SVID) error {
	t.Helper()
	s, cancel := openSync(t, agentClient(t, e, &nodeapitest.Agent{ID: svid.ID, SVID: svid}), nil)
	defer cancel()
	_, err := s.Recv()
	return err
}

// A renewal's answer is lost (the connection dropped after the server
// recorded it, or the agent died before saving it): the SVID the agent
// still holds stays valid until it uses a newer one, so it renews again.
// Once the agent uses its new SVID, every older one is dead.
func TestLostRenewalAnswerIsNotFatal(t *testing.T) {
	e, _, _ := newRenewEnv(t)
	a := e.NewAgent("lost")
	lost := renewKeep(t, e, a.SVID) // the answer the agent never got
	if err := syncErr(t, e, a.SVID); err != nil {
		t.Fatalf("the SVID the agent holds, after a renewal it never saw: %v", err)
	}
	next := renewKeep(t, e, a.SVID)
	if err := syncErr(t, e, lost); grpcCode(err) != codes.Unauthenticated {
		t.Fatalf("the lost SVID, replaced by a later renewal: %v, want Unauthenticated", err)
	}
	if err := syncErr(t, e, next); err != nil {
		t.Fatalf("the new SVID: %v", err)
	}
	rec, err := e.Store.GetAgent(context.Background(), a.ID.String())
	if err != nil || rec.SerialNumber != next.Certificates[0].SerialNumber.String() || rec.NewSerialNumber != "" {
		t.Fatalf("record after first use of the new SVID: %+v (err %v)", rec, err)
	}
	if err := syncErr(t, e, a.SVID); grpcCode(err) != codes.Unauthenticated {
		t.Fatalf("the old SVID once the new one was used: %v, want Unauthenticated", err)
	}
}

// While a renewal's answer is unused, the older SVID (maybe a copy) can
// fail a re-attestation without getting the agent evicted; the holder of
// the newest SVID cannot.
func TestOnlyTheNewestSVIDCanGetTheAgentEvicted(t *testing.T) {
	e, v, _ := newRenewEnv(t)
	a := e.NewAgent("older")
	newer := renewKeep(t, e, a.SVID)
	v.set(func(context.Context, attestors.VerifyRequest) (attestors.Result, error) {
		return attestors.Result{}, attestors.Rejected(errors.New("quote: bad signature"))
	})
	if _, err := renew(t, e, a.SVID, testCollector{}); grpcCode(err) != codes.PermissionDenied {
		t.Fatalf("renewal with false evidence: %v", err)
	}
	if serialOf(t, e, a.ID) == "" {
		t.Fatal("false evidence from the older of two valid SVIDs evicted the agent")
	}
	if _, err := renew(t, e, newer, testCollector{}); grpcCode(err) != codes.PermissionDenied {
		t.Fatalf("renewal with false evidence: %v", err)
	}
	if serialOf(t, e, a.ID) != "" {
		t.Fatal("false evidence from the agent's newest SVID did not evict it")
	}
}
