package test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hallmarkid/hallmark/agent/manager"
	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	tpmattestor "github.com/hallmarkid/hallmark/attestors/tpm"
	"github.com/hallmarkid/hallmark/test/testenv"
	"github.com/hallmarkid/hallmark/tpm/tpmtest"
)

// An agent attested on server A streams from server B; evicting it on A
// ends its stream on B at once (PostgreSQL NOTIFY), not when its
// certificate expires an hour later.
func TestHAEvictionOnOneServerEndsStreamsOnTheOther(t *testing.T) {
	ds := postgresDatastore(t)
	env := testenv.New(t)
	a := env.StartServer(testenv.WithHCL(ds))
	b := env.StartServer(testenv.WithHCL(ds), testenv.WithCAFrom(a))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, key, err := attestWithToken(ctx, nodeClient(t, a), a.Token())
	if err != nil {
		t.Fatal(err)
	}
	id, err := x509svid.IDFromCert(res.Certs[0])
	if err != nil {
		t.Fatal(err)
	}
	if left := time.Until(res.Certs[0].NotAfter); left < 10*time.Minute {
		t.Fatalf("agent SVID lives %s; the test needs it to outlive the eviction by far", left)
	}
	onB := nodeClient(t, b)
	onB.SetBundle(res.Bundle)
	onB.SetSVID(&x509svid.SVID{ID: spiffeid.RequireFromString(id.String()), Certificates: res.Certs, PrivateKey: key})
	stream, err := onB.Sync(ctx, &apiv1.SyncRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("first sync message from B: %v", err)
	}
	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := stream.Recv(); err != nil {
				ended <- err
				return
			}
		}
	}()

	start := time.Now()
	a.MustCLI("agent", "evict", "-spiffeID", id.String())
	select {
	case err := <-ended:
		t.Logf("stream on B ended %s after the eviction on A: %v", time.Since(start), err)
	case <-time.After(10 * time.Second):
		t.Fatal("the evicted agent's stream on server B is still open 10 s after the eviction on server A")
	}
}

// A ban is shared by every server on the database: banning a TPM agent on
// server A ends its stream on server B at once, and B refuses the agent's
// re-attestation; evicting the banned agent (on either server) lifts it.
func TestHABanOnOneServerRefusesReattestationOnTheOther(t *testing.T) {
	tpmtest.Require(t)
	ca := tpmtest.SharedCA(t, "lifecycle")
	inst := tpmtest.Shared(t, "lifecycle", ca).Start(t)
	ds := postgresDatastore(t)
	env := testenv.New(t)
	a := tpmServer(t, env, ca, "", testenv.WithHCL(ds))
	b := tpmServer(t, env, ca, "", testenv.WithHCL(ds), testenv.WithCAFrom(a))
	col, err := tpmattestor.NewCollector(tpmattestor.AgentConfig{Device: inst.Device(), EventLog: "none"}, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer col.Close()
	attestAt := func(srv *testenv.Server) (*x509svid.SVID, error) {
		key, csr, _ := manager.NewKeyAndCSR()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		res, err := nodeClient(t, srv).Attest(ctx, col, key, csr)
		if err != nil {
			return nil, unwrapAll(err)
		}
		return &x509svid.SVID{ID: spiffeIDOf(t, res), Certificates: res.Certs, PrivateKey: key}, nil
	}
	svid, err := attestAt(a)
	if err != nil {
		t.Fatal(err)
	}
	onB := nodeClient(t, b)
	onB.SetBundle(bundleOf(t, b))
	onB.SetSVID(svid)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stream, err := onB.Sync(ctx, &apiv1.SyncRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("first sync message from B: %v", err)
	}
	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := stream.Recv(); err != nil {
				ended <- err
				return
			}
		}
	}()

	start := time.Now()
	a.MustCLI("agent", "ban", "-spiffeID", svid.ID.String())
	select {
	case err := <-ended:
		t.Logf("stream on B ended %s after the ban on A: %v", time.Since(start), err)
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "banned") {
			t.Fatalf("the banned agent's stream on B ended with %v, want PermissionDenied naming the ban", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the banned agent's stream on server B is still open 10 s after the ban on server A")
	}
	if _, err := attestAt(b); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "banned") {
		t.Fatalf("re-attestation on B of an agent banned on A: %v, want PermissionDenied naming the ban", err)
	}
	if out := b.MustCLI("agent", "show", "-spiffeID", svid.ID.String()); !strings.Contains(out, "Banned            : true") {
		t.Fatalf("agent show on B:\n%s", out)
	}

	b.MustCLI("agent", "evict", "-spiffeID", svid.ID.String())
	if _, err := attestAt(a); err != nil {
		t.Fatalf("re-attestation on A after the ban was lifted on B: %v", err)
	}
}
