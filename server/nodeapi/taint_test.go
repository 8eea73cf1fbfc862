package nodeapi_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/hallmarkid/hallmark/server/nodeapi/nodeapitest"
)

// A tainted authority is named in the bundle pushed to agents (by subject
// key ID), so they re-mint what it signed; untainted ones are not.
func TestSyncBundleNamesTaintedAuthorities(t *testing.T) {
	e := nodeapitest.New(t)
	a := e.NewAgent("a")
	ctx := context.Background()
	first := e.CA.Authorities()[0]
	next, err := e.CA.PrepareAuthority(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.CA.ActivateAuthority(ctx, next.ID); err != nil {
		t.Fatal(err)
	}

	s, cancel := openSync(t, agentClient(t, e, a), nil)
	msg, err := s.Recv()
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if got := msg.GetBundle().GetTaintedAuthorityKeyIds(); len(got) != 0 {
		t.Fatalf("tainted key IDs before any taint: %x", got)
	}

	if _, err := e.CA.TaintAuthority(ctx, first.ID); err != nil {
		t.Fatal(err)
	}
	s, cancel = openSync(t, agentClient(t, e, a), nil)
	defer cancel()
	msg, err = s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	got := msg.GetBundle().GetTaintedAuthorityKeyIds()
	if len(got) != 1 || !bytes.Equal(got[0], first.Certificate.SubjectKeyId) {
		t.Fatalf("tainted key IDs = %x, want [%x]", got, first.Certificate.SubjectKeyId)
	}
	if n := len(msg.GetBundle().GetX509Authorities()); n != 2 {
		t.Fatalf("bundle holds %d authorities; a tainted one stays until revoked", n)
	}
}
