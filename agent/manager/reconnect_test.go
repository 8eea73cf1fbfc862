package manager_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/internal/syncbuf"

	"github.com/hallmarkid/hallmark/agent/manager"
	"github.com/hallmarkid/hallmark/server/nodeapi"
	"github.com/hallmarkid/hallmark/server/nodeapi/nodeapitest"
)

// When the server ends the stream because it is stopping, the manager
// takes it as such — no error, the stream was healthy — and draws its
// first reconnect over the window the server asked for.
func TestReconnectAfterServerStopUsesItsWindow(t *testing.T) {
	e := nodeapitest.New(t)
	a := e.NewAgent("a")
	e.Put(nodeapitest.Entry(a, "x"))
	var logs syncbuf.Buffer
	_, m := runAgentWith(t, e, a, func(c *manager.Config) {
		c.Log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	waitConnected := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		for !m.Connected() {
			if ctx.Err() != nil {
				t.Fatal("manager never connected")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitLog := func(want string) string {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			for _, line := range strings.Split(logs.String(), "\n") {
				if strings.Contains(line, want) {
					return line
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no log line with %q in:\n%s", want, logs.String())
			}
		}
	}
	waitConnected()
	e.Server.EndStreams()
	line := waitLog("Server stopping; reconnecting")
	if want := "spread_over=" + nodeapi.StopWindow(1).String(); !strings.Contains(line, want) || !strings.Contains(line, "level=INFO") {
		t.Fatalf("log line %q: want an INFO line with %s", line, want)
	}
	if strings.Contains(logs.String(), "Entry stream from server lost") {
		t.Fatalf("a server stop was logged as a lost stream:\n%s", logs.String())
	}
}
