package test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/test/testenv"
)

// A server at its connection limits answers a new connection with a busy
// refusal (a retry window, before any TLS); the real agent reports it as
// such, keeps retrying within the server's window, and attests as soon as
// there is room.
func TestAgentRetriesBusyServer(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer(testenv.WithServerHCL(`max_unauthenticated_connections = 1
max_unauthenticated_connections_per_source = 1`))
	// A TCP connection that never starts TLS holds the only slot (until
	// the first-message timeout, 10 s).
	hold, err := (&net.Dialer{}).DialContext(context.Background(), "tcp", srv.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()

	ag := env.StartAgent(srv, srv.Token(), testenv.NoWait())
	testenv.WaitFor(t, 8*time.Second, "the agent to report the server busy", func() bool {
		return strings.Contains(ag.Log(), "server busy, retry within")
	})
	if ag.Healthy() == nil {
		t.Fatal("agent healthy while the server had no room for it")
	}
	hold.Close()
	ag.WaitHealthy()
}

// A stopping server ends the agent's stream asking it to spread its
// reconnect over a window (1 ms per connected agent); the real agent logs
// the stop as such and resumes its stream (since_revision) on the
// restarted server.
func TestAgentReconnectsAfterServerStop(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer()
	ag := env.StartAgent(srv, srv.Token())
	// An entry, so that the agent holds a revision to resume from.
	const want = "spiffe://example.org/workload/stop"
	srv.CreateEntry(want, ag.ID(), "-selector", uidSelector())
	before := waitForSVID(t, ag.Addr(), want)

	srv.Stop()
	testenv.WaitFor(t, 10*time.Second, "the agent to see the server stopping", func() bool {
		return strings.Contains(ag.Log(), "Server stopping; reconnecting")
	})
	if line := logLine(ag.Log(), "Server stopping; reconnecting"); !strings.Contains(line, "spread_over=1ms") {
		t.Fatalf("stop logged as %q, want the server's window for one agent (1ms)", line)
	}
	if n := strings.Count(ag.Log(), "Entry stream from server established"); n != 1 {
		t.Fatalf("%d streams established by the time the server stopped, want 1 (no snapshot from a stopping server):\n%s", n, ag.Log())
	}
	srv.Start()
	testenv.WaitFor(t, 20*time.Second, "the agent's stream resumed", func() bool {
		return strings.Count(ag.Log(), "Entry stream from server established") >= 2
	})
	if line := lastLogLine(ag.Log(), "Entry stream from server established"); !strings.Contains(line, "resumed=true") {
		t.Fatalf("reconnect logged as %q, want a resumed stream", line)
	}
	// Nothing re-minted: the workload still gets the same SVID.
	after := waitForSVID(t, ag.Addr(), want)
	if after.DefaultSVID().Certificates[0].SerialNumber.Cmp(before.DefaultSVID().Certificates[0].SerialNumber) != 0 {
		t.Fatal("the SVID was re-minted across the server's restart")
	}
}

func logLine(log, want string) string {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, want) {
			return l
		}
	}
	return ""
}

func lastLogLine(log, want string) string {
	lines := strings.Split(log, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], want) {
			return lines[i]
		}
	}
	return ""
}
