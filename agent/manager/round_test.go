package manager_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/agent/manager"
	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/nodeapi/nodeapitest"
)

// 200 entries arriving at once are minted in 7 signing calls but reach
// the cache's readers (Workload API and SDS streams) as one change, not
// one per call: each change made a watcher parse all its SVIDs again.
func TestMintRoundWakesReadersOnce(t *testing.T) {
	const n = 200
	e := nodeapitest.New(t)
	ag := e.NewAgent("me")
	e.Put(nodeapitest.Entry(ag, "first"))
	ch, _ := runAgentWith(t, e, ag, func(c *manager.Config) { c.PublishEvery = time.Hour })
	waitFor(t, ch, "the first SVID", func() bool { return len(serials(ch)) == 1 })
	calls0, _ := e.Signed()
	_, gen0 := ch.Changed()

	var es []registration.Entry
	for i := range n {
		es = append(es, nodeapitest.Entry(ag, fmt.Sprintf("bulk%03d", i)))
	}
	e.Put(es...)
	waitFor(t, ch, "all SVIDs", func() bool { return len(serials(ch)) == n+1 })
	_, gen1 := ch.Changed()
	calls1, _ := e.Signed()
	if calls := calls1 - calls0; calls != (n+manager.DefaultBatchSize-1)/manager.DefaultBatchSize {
		t.Fatalf("%d signing calls for %d SVIDs", calls, n)
	}
	// One change for the entries, one for the round's SVIDs (the entries
	// may come in more than one sync message).
	if changes := gen1 - gen0; changes > 3 {
		t.Fatalf("%d changes woke the readers while %d SVIDs were minted, want at most 3", changes, n)
	}
}
