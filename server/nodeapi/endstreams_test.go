package nodeapi_test

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hallmarkid/hallmark/server/nodeapi/nodeapitest"
)

// A stopping server ends every Sync stream with Unavailable (a reason to
// reconnect, not an eviction), so that its graceful stop does not wait
// for streams that never end by themselves; streams opened afterwards end
// at once too.
func TestEndStreams(t *testing.T) {
	e := nodeapitest.New(t)
	ag := e.NewAgent("a")
	e.Put(nodeapitest.Entry(ag, "x"))
	c := agentClient(t, e, ag)
	s, cancel := openSync(t, c, nil)
	defer cancel()
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	e.Server.EndStreams()
	_, err := s.Recv()
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("stream ended with %v, want Unavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("stream ended after %s", d)
	}
	s2, cancel2 := openSync(t, c, nil)
	defer cancel2()
	for {
		if _, err := s2.Recv(); err != nil {
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("stream opened after EndStreams ended with %v, want Unavailable", err)
			}
			break
		}
	}
	e.Server.EndStreams() // twice is fine
}

// A change to another agent's entries sends nothing on this agent's
// stream, and a change to its own entries still arrives after it.
func TestSyncIgnoresOtherAgentsChanges(t *testing.T) {
	e := nodeapitest.New(t)
	ag, stranger := e.NewAgent("a"), e.NewAgent("b")
	e.Put(nodeapitest.Entry(ag, "mine"))
	s, cancel := openSync(t, agentClient(t, e, ag), nil)
	defer cancel()
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		theirs := nodeapitest.Entry(stranger, "theirs")
		theirs.DNSNames = []string{string(rune('a'+i)) + ".example.org"}
		e.Put(theirs)
	}
	mine := nodeapitest.Entry(ag, "mine2")
	e.Put(mine)
	msg, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got := upsertIDs(msg); len(got) != 1 || got[0] != mine.ID || len(msg.GetDeletedIds()) != 0 {
		t.Fatalf("first message after the changes: upserts %v deleted %v, want only %s", got, msg.GetDeletedIds(), mine.ID)
	}
}
