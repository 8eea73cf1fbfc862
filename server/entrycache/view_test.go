package entrycache_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/entrycache"
)

// TestStale: a View goes stale exactly when a change can alter its
// agent's answer — an entry under the agent, under one of its aliases or
// under one of its entries (before or after the change), any node entry,
// or a reload — and stays current (brought forward) otherwise.
func TestStale(t *testing.T) {
	agentA := spiffeid.RequireFromString("spiffe://example.org/agent/a")
	agentB := "spiffe://example.org/agent/b"
	alias := "spiffe://example.org/nodes/all"
	base := []registration.Entry{
		entry("a1", "spiffe://example.org/a/w1", agentA.String(), "unix:uid:1"),
		entry("b1", "spiffe://example.org/b/w1", agentB, "unix:uid:1"),
		entry("node-a", alias, serverID.String(), "join_token:a"),
		entry("shared", "spiffe://example.org/shared", alias, "unix:uid:9"),
		entry("nested", "spiffe://example.org/nested", "spiffe://example.org/a/w1", "unix:uid:3"),
	}
	sels := []registration.Selector{{Type: "join_token", Value: "a"}}
	tests := []struct {
		name      string
		upserts   []registration.Entry
		deleted   []string
		reset     bool
		wantStale bool
	}{
		{name: "another agent's entry", upserts: []registration.Entry{rev(entry("b1", "spiffe://example.org/b/w1", agentB, "unix:uid:7"), 2)}},
		{name: "new entry of another agent", upserts: []registration.Entry{entry("b2", "spiffe://example.org/b/w2", agentB, "unix:uid:2")}},
		{name: "own entry", upserts: []registration.Entry{rev(entry("a1", "spiffe://example.org/a/w1", agentA.String(), "unix:uid:7"), 2)}, wantStale: true},
		{name: "entry moved to the agent", upserts: []registration.Entry{rev(entry("b1", "spiffe://example.org/b/w1", agentA.String(), "unix:uid:1"), 2)}, wantStale: true},
		{name: "entry moved away from the agent", upserts: []registration.Entry{rev(entry("a1", "spiffe://example.org/a/w1", agentB, "unix:uid:1"), 2)}, wantStale: true},
		{name: "shared entry under the alias", upserts: []registration.Entry{rev(entry("shared", "spiffe://example.org/shared", alias, "unix:uid:8"), 2)}, wantStale: true},
		{name: "nested entry", deleted: []string{"nested"}, wantStale: true},
		{name: "own entry deleted", deleted: []string{"a1"}, wantStale: true},
		{name: "another agent's entry deleted", deleted: []string{"b1"}},
		{name: "any node entry", upserts: []registration.Entry{entry("node-b", alias, serverID.String(), "join_token:b")}, wantStale: true},
		{name: "reload", reset: true, wantStale: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := entrycache.New(serverID)
			c.Reset(base, 1)
			v := c.View(agentA, sels)
			if len(v.Entries) != 3 {
				t.Fatalf("view holds %v, want a1, shared, nested", ids(v.Entries))
			}
			if tt.reset {
				c.Reset(base, 5)
			} else {
				c.Apply(tt.upserts, tt.deleted, 5)
			}
			if got := c.Stale(&v); got != tt.wantStale {
				t.Fatalf("Stale = %v, want %v", got, tt.wantStale)
			}
			if !tt.wantStale {
				if v.Revision != 5 {
					t.Errorf("a current view was not brought forward: revision %d", v.Revision)
				}
				// The view still equals a fresh answer.
				if fresh := c.View(agentA, sels); fmt.Sprint(ids(fresh.Entries)) != fmt.Sprint(ids(v.Entries)) {
					t.Errorf("view %v differs from a fresh answer %v", ids(v.Entries), ids(fresh.Entries))
				}
				if c.Stale(&v) {
					t.Error("stale on a second look without a change")
				}
			}
		})
	}
}

// A view older than the change log remembers is stale.
func TestStaleAfterManyChanges(t *testing.T) {
	c := entrycache.New(serverID)
	agentA := spiffeid.RequireFromString("spiffe://example.org/agent/a")
	v := c.View(agentA, nil)
	for i := range 2000 {
		c.Apply([]registration.Entry{entry(fmt.Sprint(i), fmt.Sprintf("spiffe://example.org/x/%d", i), "spiffe://example.org/agent/b")}, nil, int64(i+1))
	}
	if !c.Stale(&v) {
		t.Fatal("a view older than the change log is not stale")
	}
}

// Node entries are found by selector: removing or changing one updates
// the index, and one without selectors aliases every agent.
func TestAliasIndex(t *testing.T) {
	c := entrycache.New(serverID)
	c.Reset([]registration.Entry{
		entry("n1", "spiffe://example.org/nodes/x", serverID.String(), "tpm:a", "tpm:b"),
		entry("n2", "spiffe://example.org/nodes/y", serverID.String(), "tpm:a"),
	}, 1)
	names := func(es []registration.Entry) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.ID)
		}
		return sortStrings(out)
	}
	ab := []registration.Selector{{Type: "tpm", Value: "a"}, {Type: "tpm", Value: "b"}}
	if got := names(c.Aliases(ab)); fmt.Sprint(got) != "[n1 n2]" {
		t.Fatalf("aliases %v", got)
	}
	if got := names(c.Aliases(ab[:1])); fmt.Sprint(got) != "[n2]" {
		t.Fatalf("aliases with tpm:a only %v", got)
	}
	c.Apply([]registration.Entry{rev(entry("n2", "spiffe://example.org/nodes/y", serverID.String(), "tpm:c"), 2)}, []string{"n1"}, 2)
	if got := names(c.Aliases(ab)); len(got) != 0 {
		t.Fatalf("stale index: %v", got)
	}
	c.Apply([]registration.Entry{entry("n3", "spiffe://example.org/nodes/all", serverID.String())}, nil, 3)
	if got := names(c.Aliases(nil)); fmt.Sprint(got) != "[n3]" {
		t.Fatalf("selector-less node entry: %v", got)
	}
}

// BenchmarkAuthorizedFleet: one agent's answer among 1,000 agents, each
// with its own node entry (join token) to one shared alias.
func BenchmarkAuthorizedFleet(b *testing.B) {
	c := entrycache.New(serverID)
	var es []registration.Entry
	for i := range 1000 {
		agent := fmt.Sprintf("spiffe://example.org/agent/%d", i)
		es = append(es, entry(fmt.Sprintf("n%d", i), "spiffe://example.org/nodes/all", serverID.String(), fmt.Sprintf("join_token:%d", i)))
		for j := range 20 {
			es = append(es, entry(fmt.Sprintf("e%d-%d", i, j), fmt.Sprintf("spiffe://example.org/a%d/w%d", i, j), agent, "unix:uid:1"))
		}
	}
	c.Reset(es, 1)
	agent := spiffeid.RequireFromString("spiffe://example.org/agent/7")
	sels := []registration.Selector{{Type: "join_token", Value: "7"}}
	for b.Loop() {
		c.Apply(nil, []string{"missing"}, 2) // clears the memo
		c.Authorized(agent, sels)
	}
}

func rev(e registration.Entry, r int64) registration.Entry {
	e.Revision = r
	return e
}

func sortStrings(s []string) []string {
	slices.Sort(s)
	return s
}
