package test

import (
	"context"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/test/testenv"
)

// Tainting an authority makes agents re-mint, at once, every workload SVID
// it signed and renew their own SVID if it signed that — hour-long SVIDs
// included — so the authority can be revoked right after without breaking
// anything.
func TestTaintedAuthorityRemintedAtOnce(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer()
	ag := env.StartAgent(srv, srv.Token())
	const id = "spiffe://example.org/taint/long-lived"
	srv.CreateEntry(id, ag.ID(), "-selector", uidSelector(), "-x509SVIDTTL", "3600")
	before := waitForSVID(t, ag.Addr(), id).DefaultSVID().Certificates[0]

	first := localAuthorities(t, env, srv, "x509")["active"][0]
	if hex.EncodeToString(before.AuthorityKeyId) != first.GetSubjectKeyId() {
		t.Fatal("the workload SVID is not signed by the active authority")
	}
	agentSerial := func() string {
		resp, err := srv.Admin().ListAgents(context.Background(), &apiv1.ListAgentsRequest{})
		if err != nil || len(resp.GetAgents()) != 1 {
			t.Fatalf("agent list: %v %v", resp, err)
		}
		return resp.GetAgents()[0].GetX509SvidSerialNumber()
	}
	serial0 := agentSerial()

	mustLocalAuthority(t, env, srv, "x509", "prepare")
	next := localAuthorities(t, env, srv, "x509")["prepared"][0]
	mustLocalAuthority(t, env, srv, "x509", "activate", "-authorityID", next.GetAuthorityId())
	// Activation alone re-mints nothing: the SVID is far from half-life.
	time.Sleep(time.Second)
	if got := fetch(t, ag.Addr()).DefaultSVID().Certificates[0]; got.SerialNumber.Cmp(before.SerialNumber) != 0 {
		t.Fatal("the workload SVID was re-minted by activation alone")
	}

	tainted := time.Now()
	mustLocalAuthority(t, env, srv, "x509", "taint", "-authorityID", first.GetAuthorityId())
	testenv.WaitFor(t, 10*time.Second, "workload SVID re-minted under the new authority", func() bool {
		leaf := fetch(t, ag.Addr()).DefaultSVID().Certificates[0]
		return hex.EncodeToString(leaf.AuthorityKeyId) == next.GetSubjectKeyId()
	})
	took := time.Since(tainted)
	testenv.WaitFor(t, 10*time.Second, "agent SVID renewed under the new authority", func() bool {
		return agentSerial() != serial0
	})
	t.Logf("workload SVID re-minted %s after the taint", took)
	if !strings.Contains(ag.Log(), "Renewing the agent SVID now: its issuing authority was tainted") {
		t.Fatalf("the agent did not renew because of the taint:\n%s", ag.Log())
	}

	// Revoking the old authority right away breaks nothing.
	mustLocalAuthority(t, env, srv, "x509", "revoke", "-authorityID", first.GetAuthorityId())
	const later = "spiffe://example.org/taint/after-revoke"
	srv.CreateEntry(later, ag.ID(), "-selector", uidSelector())
	waitForSVID(t, ag.Addr(), later)
	if err := ag.Healthy(); err != nil {
		t.Fatalf("agent unhealthy after the revocation: %v", err)
	}
}

// Tainting a JWT key makes the agent drop the tokens it cached from that
// key: the next fetch for the same audience gets a token of the active key.
func TestTaintedJWTKeyDropsCachedTokens(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer()
	ag := env.StartAgent(srv, srv.Token())
	const id = "spiffe://example.org/taint/jwt"
	srv.CreateEntry(id, ag.ID(), "-selector", uidSelector())
	waitForSVID(t, ag.Addr(), id)

	k1 := localAuthorities(t, env, srv, "jwt")["active"][0].GetAuthorityId()
	if kid := kidOf(t, fetchJWT(t, ag.Addr(), id, "aud")); kid != k1 {
		t.Fatalf("first token signed by %s, want %s", kid, k1)
	}
	mustLocalAuthority(t, env, srv, "jwt", "prepare")
	k2 := localAuthorities(t, env, srv, "jwt")["prepared"][0].GetAuthorityId()
	mustLocalAuthority(t, env, srv, "jwt", "activate", "-authorityID", k2)
	// Still fresh: the agent serves the cached token of k1.
	if kid := kidOf(t, fetchJWT(t, ag.Addr(), id, "aud")); kid != k1 {
		t.Fatalf("after activation the cached token is of %s, want the cached %s", kid, k1)
	}
	mustLocalAuthority(t, env, srv, "jwt", "taint", "-authorityID", k1)
	testenv.WaitFor(t, 10*time.Second, "a token of the active key for the same audience", func() bool {
		return kidOf(t, fetchJWT(t, ag.Addr(), id, "aud")) == k2
	})
}
