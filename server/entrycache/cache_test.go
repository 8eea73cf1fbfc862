package entrycache_test

import (
	"fmt"
	"sort"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/entrycache"
)

var serverID = spiffeid.RequireFromString("spiffe://example.org/hallmark/server")

func entry(id, spiffe, parent string, sels ...string) registration.Entry {
	e := registration.Entry{ID: id, SPIFFEID: spiffeid.RequireFromString(spiffe), ParentID: spiffeid.RequireFromString(parent)}
	for _, s := range sels {
		sel, err := registration.ParseSelector(s)
		if err != nil {
			panic(err)
		}
		e.Selectors = append(e.Selectors, sel)
	}
	return e
}

func ids(m map[string]*registration.Entry) []string {
	var out []string
	for id := range m {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

func TestAuthorized(t *testing.T) {
	c := entrycache.New(serverID)
	agentA := spiffeid.RequireFromString("spiffe://example.org/agent/a")
	agentB := spiffeid.RequireFromString("spiffe://example.org/agent/b")
	c.Reset([]registration.Entry{
		entry("direct", "spiffe://example.org/w1", agentA.String(), "unix:uid:1"),
		entry("other-agent", "spiffe://example.org/w2", agentB.String(), "unix:uid:1"),
		entry("node", "spiffe://example.org/nodes/prod", serverID.String(), "tpm:secureboot:enabled", "tpm:manufacturer:x"),
		entry("via-node", "spiffe://example.org/w3", "spiffe://example.org/nodes/prod", "unix:uid:2"),
		entry("nested", "spiffe://example.org/w4", "spiffe://example.org/w3", "unix:uid:3"),
		entry("loop", "spiffe://example.org/w3", "spiffe://example.org/w4", "unix:uid:4"),
	}, 6)

	tests := []struct {
		name  string
		agent spiffeid.ID
		sels  []registration.Selector
		want  []string
	}{
		{name: "direct only", agent: agentA, want: []string{"direct"}},
		{name: "node alias and descendants", agent: agentA, sels: []registration.Selector{
			{Type: "tpm", Value: "secureboot:enabled"}, {Type: "tpm", Value: "manufacturer:x"}, {Type: "tpm", Value: "extra"},
		}, want: []string{"direct", "loop", "nested", "via-node"}},
		{name: "partial node selectors do not alias", agent: agentA, sels: []registration.Selector{{Type: "tpm", Value: "secureboot:enabled"}}, want: []string{"direct"}},
		{name: "another agent", agent: agentB, want: []string{"other-agent"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, rev := c.Authorized(tt.agent, tt.sels)
			if fmt.Sprint(ids(got)) != fmt.Sprint(tt.want) {
				t.Fatalf("got %v, want %v", ids(got), tt.want)
			}
			if rev != 6 {
				t.Fatalf("rev = %d", rev)
			}
		})
	}
}

func TestApplyBroadcastsAndReindexes(t *testing.T) {
	c := entrycache.New(serverID)
	agent := spiffeid.RequireFromString("spiffe://example.org/agent/a")
	ch := c.Changed()
	c.Apply([]registration.Entry{entry("e1", "spiffe://example.org/w", agent.String(), "unix:uid:1")}, nil, 1)
	select {
	case <-ch:
	default:
		t.Fatal("no broadcast on Apply")
	}
	// Re-parenting an entry moves it between agents.
	c.Apply([]registration.Entry{entry("e1", "spiffe://example.org/w", "spiffe://example.org/agent/b", "unix:uid:1")}, nil, 2)
	if got, _ := c.Authorized(agent, nil); len(got) != 0 {
		t.Fatalf("stale index: %v", ids(got))
	}
	c.Apply(nil, []string{"e1"}, 3)
	if c.Len() != 0 || c.Revision() != 3 {
		t.Fatalf("len=%d rev=%d", c.Len(), c.Revision())
	}
	// Lower revisions never move the cache backwards.
	c.Apply(nil, []string{"missing"}, 1)
	if c.Revision() != 3 {
		t.Fatalf("rev went back to %d", c.Revision())
	}
}

func BenchmarkAuthorized10k(b *testing.B) {
	c := entrycache.New(serverID)
	agent := spiffeid.RequireFromString("spiffe://example.org/agent/a")
	var es []registration.Entry
	for i := range 10000 {
		es = append(es, entry(fmt.Sprint(i), fmt.Sprintf("spiffe://example.org/w/%d", i), agent.String(), fmt.Sprintf("unix:uid:%d", i)))
	}
	c.Reset(es, 1)
	b.ResetTimer()
	for b.Loop() {
		c.Authorized(agent, nil)
	}
}

// TestApplyUpdate: an updated entry replaces the cached one (selectors,
// parent, TTL), and an older version arriving later does not undo it.
func TestApplyUpdate(t *testing.T) {
	c := entrycache.New(serverID)
	agentA := spiffeid.RequireFromString("spiffe://example.org/agent/a")
	agentB := spiffeid.RequireFromString("spiffe://example.org/agent/b")
	v1 := entry("e1", "spiffe://example.org/w", agentA.String(), "unix:uid:1")
	v1.Revision = 1
	c.Apply([]registration.Entry{v1}, nil, 1)

	v2 := entry("e1", "spiffe://example.org/w2", agentB.String(), "unix:uid:2")
	v2.Revision, v2.X509SVIDTTL = 2, 42
	c.Apply([]registration.Entry{v2}, nil, 2)
	c.Apply([]registration.Entry{v1}, nil, 1) // a stale catch-up

	got, ok := c.Get("e1")
	if !ok || got.Revision != 2 || got.SPIFFEID != v2.SPIFFEID || got.X509SVIDTTL != 42 {
		t.Fatalf("Get(e1) = %+v, %v; want the update at revision 2", got, ok)
	}
	if a, _ := c.Authorized(agentA, nil); len(a) != 0 {
		t.Errorf("old parent still authorised for %v", ids(a))
	}
	if b, _ := c.Authorized(agentB, nil); len(b) != 1 || b["e1"].Selectors[0].Value != "uid:2" {
		t.Errorf("new parent authorised for %v, want e1 with the new selectors", b)
	}
	if c.Len() != 1 || c.Revision() != 2 {
		t.Errorf("len=%d rev=%d, want 1 and 2", c.Len(), c.Revision())
	}
}
