package test

import (
	"context"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/test/testenv"
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
