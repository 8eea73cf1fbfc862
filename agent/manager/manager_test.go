package manager_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/agent/cache"
	"github.com/hallmarkid/hallmark/agent/client"
	"github.com/hallmarkid/hallmark/agent/manager"
	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/nodeapi/nodeapitest"
)

var (
	td      = nodeapitest.TrustDomain
	partner = spiffeid.RequireTrustDomainFromString("partner.test")
	uid1000 = registration.Selector{Type: "unix", Value: "uid:1000"}
)

// runAgent runs a manager as agent a against e's server, with the real
// client, until the end of the test.
func runAgent(t *testing.T, e *nodeapitest.Env, a *nodeapitest.Agent) (*cache.Cache, *manager.Manager) {
	t.Helper()
	return runAgentWith(t, e, a, nil)
}

// runAgentWith is runAgent with mod applied to the manager's config.
func runAgentWith(t *testing.T, e *nodeapitest.Env, a *nodeapitest.Agent, mod func(*manager.Config)) (*cache.Cache, *manager.Manager) {
	t.Helper()
	c, err := client.New(client.Config{Address: e.Addr, TrustDomain: td, Bundle: e.CA.Bundle()})
	if err != nil {
		t.Fatal(err)
	}
	c.SetSVID(a.SVID)
	t.Cleanup(func() { c.Close() })
	ch := cache.New()
	cfg := manager.Config{Server: c, Cache: ch, TrustDomain: td}
	if mod != nil {
		mod(&cfg)
	}
	m := manager.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = m.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return ch, m
}

// waitFor waits until cond holds, re-checking at every cache change.
func waitFor(t *testing.T, c *cache.Cache, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		changed, _ := c.Changed()
		if cond() {
			return
		}
		select {
		case <-changed:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// leaf parses s's leaf certificate, panicking on a malformed chain (the
// manager only stores chains it parsed).
func leaf(s *cache.SVID) *x509.Certificate {
	chain, err := s.Chain()
	if err != nil {
		panic(err)
	}
	return chain[0]
}

func serials(c *cache.Cache) map[string]string {
	ids, _ := c.Match([]registration.Selector{uid1000})
	out := make(map[string]string, len(ids))
	for _, id := range ids {
		out[id.Entry.ID] = leaf(id.SVID).SerialNumber.String()
	}
	return out
}

// An agent holding N entries reconnects after one of them changed: the
// server's first message carries exactly that entry, and only its SVID is
// minted again.
func TestReconnectResumesWithOnlyTheChange(t *testing.T) {
	const n = 40
	e := nodeapitest.New(t)
	ag := e.NewAgent("me")
	var es []registration.Entry
	for i := range n {
		es = append(es, nodeapitest.Entry(ag, fmt.Sprintf("e%02d", i)))
	}
	e.Put(es...)
	ch, m := runAgent(t, e, ag)
	waitFor(t, ch, "all SVIDs", func() bool { return len(serials(ch)) == n })
	_, csrs := e.Signed()
	if csrs != n {
		t.Fatalf("%d CSRs signed for %d entries", csrs, n)
	}
	before := serials(ch)

	e.Stop()
	changed := es[7]
	changed.DNSNames = []string{"changed.example.org"}
	rev := e.Put(changed)
	e.Start()

	waitFor(t, ch, "the changed entry's new SVID", func() bool {
		ids, _ := ch.Match([]registration.Selector{uid1000})
		for _, id := range ids {
			if id.Entry.ID == changed.ID {
				return id.SVID.EntryRevision == rev && len(leaf(id.SVID).DNSNames) == 1
			}
		}
		return false
	})
	firsts := e.FirstMessages()
	if len(firsts) != 2 {
		t.Fatalf("%d sync streams, want 2", len(firsts))
	}
	if f := firsts[0]; !f.GetFull() || len(f.GetUpserts()) != n {
		t.Fatalf("first stream: full=%v with %d upserts, want a full snapshot of %d", f.GetFull(), len(f.GetUpserts()), n)
	}
	if f := firsts[1]; !f.GetResumed() || f.GetFull() || len(f.GetUpserts()) != 1 || f.GetUpserts()[0].GetId() != changed.ID || len(f.GetDeletedIds()) != 0 {
		t.Fatalf("after reconnect: resumed=%v full=%v upserts=%d deleted=%v; want a resumption with exactly the changed entry",
			f.GetResumed(), f.GetFull(), len(f.GetUpserts()), f.GetDeletedIds())
	}
	if _, csrs := e.Signed(); csrs != n+1 {
		t.Fatalf("%d CSRs signed in all, want %d: the unchanged entries' SVIDs must be kept", csrs, n+1)
	}
	after := serials(ch)
	for id, s := range before {
		if id != changed.ID && after[id] != s {
			t.Errorf("SVID of unchanged entry %s was re-minted", id)
		}
	}
	if m.Revision() != rev {
		t.Errorf("manager at revision %d, want %d", m.Revision(), rev)
	}
}

// An entry deleted while the agent was away is dropped on resumption, and
// a new one is minted.
func TestReconnectDropsDeletedEntries(t *testing.T) {
	e := nodeapitest.New(t)
	ag := e.NewAgent("me")
	e.Put(nodeapitest.Entry(ag, "keep"), nodeapitest.Entry(ag, "gone"))
	ch, _ := runAgent(t, e, ag)
	waitFor(t, ch, "both SVIDs", func() bool { return len(serials(ch)) == 2 })

	e.Stop()
	e.Delete("gone")
	e.Put(nodeapitest.Entry(ag, "new"))
	e.Start()
	waitFor(t, ch, "gone dropped and new minted", func() bool {
		s := serials(ch)
		_, hasGone := s["gone"]
		_, hasNew := s["new"]
		entries, _ := ch.Stats()
		return !hasGone && hasNew && entries == 2
	})
	if f := e.FirstMessages(); len(f) != 2 || !f[1].GetResumed() || len(f[1].GetUpserts()) != 1 || len(f[1].GetDeletedIds()) != 1 {
		t.Fatalf("first messages %v, want a resumption upserting new and deleting gone", f)
	}
}

func TestFederatedBundlesReachTheCache(t *testing.T) {
	e := nodeapitest.New(t)
	ag := e.NewAgent("me")
	e.Put(nodeapitest.Entry(ag, "w", partner))
	pb := nodeapitest.ForeignBundle(t, partner, true)
	e.Federation.Set(partner, pb)
	ch, _ := runAgent(t, e, ag)
	waitFor(t, ch, "the partner bundle", func() bool { return ch.FederatedBundle(partner) != nil })
	got := ch.FederatedBundle(partner)
	if len(got.Certs) != 1 || !got.Certs[0].Equal(pb.X509Authorities()[0]) || got.JWT == nil || !got.JWT.HasJWTAuthority("k-partner.test") {
		t.Fatalf("cached partner bundle %+v, want its CA and JWT key", got)
	}

	rotated := nodeapitest.ForeignBundle(t, partner, false)
	e.Federation.Set(partner, rotated)
	waitFor(t, ch, "the rotated bundle", func() bool {
		b := ch.FederatedBundle(partner)
		return b != nil && b.Certs[0].Equal(rotated.X509Authorities()[0]) && b.JWT == nil
	})

	// Revoked: the fetcher's empty bundle removes it from the agent.
	e.Federation.Set(partner, spiffebundle.New(partner))
	waitFor(t, ch, "the revocation", func() bool { return ch.FederatedBundle(partner) == nil })

	// Back, then removed while the agent is away: the complete set on
	// reconnect drops it.
	e.Federation.Set(partner, pb)
	waitFor(t, ch, "the partner bundle again", func() bool { return ch.FederatedBundle(partner) != nil })
	e.Stop()
	e.Federation.Set(partner, nil)
	e.Start()
	waitFor(t, ch, "the removal after reconnect", func() bool { return ch.FederatedBundle(partner) == nil })
}
