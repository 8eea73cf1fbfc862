package nodeapi_test

import (
	"fmt"
	"runtime"
	"testing"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/nodeapi/nodeapitest"
)

// BenchmarkSyncStreamRetained reports what one connected agent costs
// between changes, with 200 agents of 23 entries each holding a Sync
// stream over its own mTLS connection: the heap ("heap-B/agent") and
// goroutine stacks ("stack-B/agent") in use once every stream has its
// first message, per agent. Client and server run in this process, so
// both sides of each connection are counted; compare runs, not the
// absolute figure with a server's.
func BenchmarkSyncStreamRetained(b *testing.B) {
	const agents, perAgent = 200, 23
	for b.Loop() {
		e := nodeapitest.New(b)
		var as []*nodeapitest.Agent
		for i := range agents {
			a := e.NewAgent(fmt.Sprintf("a%d", i))
			var es []registration.Entry
			for j := range perAgent {
				es = append(es, nodeapitest.Entry(a, fmt.Sprintf("a%d-e%d", i, j)))
			}
			e.Put(es...)
			as = append(as, a)
		}
		before := memInUse()
		var streams []syncStream
		for _, a := range as {
			s, cancel := openSync(b, agentClient(b, e, a), &apiv1.SyncRequest{})
			b.Cleanup(cancel)
			msg, err := s.Recv()
			if err != nil {
				b.Fatal(err)
			}
			if len(msg.GetUpserts()) != perAgent {
				b.Fatalf("%d upserts, want %d", len(msg.GetUpserts()), perAgent)
			}
			streams = append(streams, s)
		}
		after := memInUse()
		b.ReportMetric(float64(after.heap-before.heap)/agents, "heap-B/agent")
		b.ReportMetric(float64(after.stack-before.stack)/agents, "stack-B/agent")
		runtime.KeepAlive(streams)
	}
}

type inUse struct{ heap, stack int64 }

func memInUse() inUse {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return inUse{heap: int64(ms.HeapAlloc), stack: int64(ms.StackInuse)}
}
