package nodeapi_test

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hallmarkid/hallmark/internal/busy"
	"github.com/hallmarkid/hallmark/server/nodeapi"
	"github.com/hallmarkid/hallmark/server/nodeapi/nodeapitest"
)

// A stopping server asks the agents whose streams it ends to spread their
// first reconnect over a window sized to how many there are: every
// stream's trailer carries the same window.
func TestEndStreamsAsksToSpreadReconnects(t *testing.T) {
	e := nodeapitest.New(t)
	var trailers []func() (time.Duration, bool)
	for _, name := range []string{"a", "b", "c"} {
		ag := e.NewAgent(name)
		e.Put(nodeapitest.Entry(ag, "x"))
		s, cancel := openSync(t, agentClient(t, e, ag), nil)
		defer cancel()
		if _, err := s.Recv(); err != nil {
			t.Fatal(err)
		}
		trailers = append(trailers, func() (time.Duration, bool) {
			for {
				if _, err := s.Recv(); err != nil {
					return busy.StopWindow(s.Trailer())
				}
			}
		})
	}
	for deadline := time.Now().Add(5 * time.Second); e.Server.ConnectedAgents() != 3; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d agents connected, want 3", e.Server.ConnectedAgents())
		}
	}
	e.Server.EndStreams()
	for i, trailer := range trailers {
		if w, ok := trailer(); !ok || w != nodeapi.StopWindow(3) {
			t.Fatalf("stream %d: stop window %v, %v; want %v", i, w, ok, nodeapi.StopWindow(3))
		}
	}

	// An agent that comes back while the server is still stopping gets
	// no snapshot: its stream ends at once, with the same window.
	late := e.NewAgent("late")
	e.Put(nodeapitest.Entry(late, "y"))
	s, cancel := openSync(t, agentClient(t, e, late), nil)
	defer cancel()
	msg, err := s.Recv()
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("stream opened while stopping: message %v, error %v; want Unavailable and no message", msg, err)
	}
	if w, ok := busy.StopWindow(s.Trailer()); !ok || w != nodeapi.StopWindow(3) {
		t.Fatalf("stream opened while stopping: stop window %v, %v; want %v", w, ok, nodeapi.StopWindow(3))
	}
}

func TestStopWindow(t *testing.T) {
	for n, want := range map[int]time.Duration{0: 0, 10: 10 * time.Millisecond, 1000: time.Second, 1 << 30: busy.MaxWindow} {
		if got := nodeapi.StopWindow(n); got != want {
			t.Errorf("StopWindow(%d) = %v, want %v", n, got, want)
		}
	}
}
