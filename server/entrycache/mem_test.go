package entrycache_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/entrycache"
)

// fleetCache is a cache shaped like the fleet benchmark's (docs/scale.md):
// agents agents, each with its own node entry (join token) mapping it to
// one shared alias, perAgent entries of its own, and 3 entries under the
// alias.
func fleetCache(agents, perAgent int) *entrycache.Cache {
	c := entrycache.New(serverID)
	var es []registration.Entry
	alias := "spiffe://example.org/fleet/nodes"
	for i := range agents {
		agent := fmt.Sprintf("spiffe://example.org/agent/join_token/%d", i)
		es = append(es, entry(fmt.Sprintf("node-%d", i), alias, serverID.String(), fmt.Sprintf("join_token:%d", i)))
		for j := range perAgent {
			// Each entry its own copy of its parent's ID, as entries
			// decoded from the datastore or an admin call have.
			es = append(es, entry(fmt.Sprintf("own-%d-%d", i, j), fmt.Sprintf("spiffe://example.org/fleet/a%d/w%d", i, j), strings.Clone(agent), fmt.Sprintf("unix:uid:%d", j)))
		}
	}
	for j := range 3 {
		es = append(es, entry(fmt.Sprintf("shared-%d", j), fmt.Sprintf("spiffe://example.org/fleet/shared/%d", j), alias, "unix:uid:0"))
	}
	c.Reset(es, 1)
	return c
}

// heapInUse is the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkViewRetained reports the heap a connected agent's View keeps
// (what each Sync stream holds between changes) with 1,000 agents of 20
// own entries and 3 shared ones: "view-B" per agent, and "cache-B" per
// cached entry.
func BenchmarkViewRetained(b *testing.B) {
	const agents, perAgent = 1000, 20
	for b.Loop() {
		base := heapInUse()
		c := fleetCache(agents, perAgent)
		withCache := heapInUse()
		views := make([]entrycache.View, agents)
		for i := range views {
			agent := spiffeid.RequireFromString(fmt.Sprintf("spiffe://example.org/agent/join_token/%d", i))
			views[i] = c.View(agent, []registration.Selector{{Type: "join_token", Value: fmt.Sprint(i)}})
			if len(views[i].Entries) != perAgent+3 {
				b.Fatalf("agent %d: %d entries, want %d", i, len(views[i].Entries), perAgent+3)
			}
		}
		c.Apply(nil, []string{"missing"}, 2) // the memo is dropped at a change; the streams' views stay
		withViews := heapInUse()
		b.ReportMetric(float64(withCache-base)/float64(c.Len()), "cache-B/entry")
		b.ReportMetric(float64(withViews-withCache)/agents, "view-B/agent")
		runtime.KeepAlive(views)
		runtime.KeepAlive(c)
	}
}
