package test

import (
	"strings"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/test/testenv"
)

// TestAgentRestartWithoutJoinToken: an agent that attested with -joinToken
// restarts without it — with no node_attestor block, or with the
// node_attestor "join_token" {} block of conf/agent.hcl — on its saved SVID,
// without attesting again; a fresh agent without a token and without a
// saved SVID stops with a sentence saying what it needs.
func TestAgentRestartWithoutJoinToken(t *testing.T) {
	tests := []struct {
		name string
		top  string
	}{
		{name: "no node_attestor block"},
		{name: "join_token block", top: `node_attestor "join_token" {}`},
	}
	env := testenv.New(t)
	srv := env.StartServer()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ag := env.StartAgent(srv, srv.Token(), testenv.WithAgentTopHCL(tt.top))
			const id = "spiffe://example.org/restart"
			srv.CreateEntry(id, ag.ID(), "-selector", uidSelector())
			waitForSVID(t, ag.Addr(), id)

			ag.RestartWithoutToken()
			if !strings.Contains(ag.Log(), "Reusing persisted agent SVID") {
				t.Fatalf("the restarted agent did not reuse its SVID:\n%s", ag.Log())
			}
			waitForSVID(t, ag.Addr(), id)
		})
	}
	t.Run("fresh agent without a token", func(t *testing.T) {
		ag := env.StartAgent(srv, "", testenv.NoWait())
		testenv.WaitFor(t, 10*time.Second, "the agent to stop", ag.Exited)
		if want := "no usable agent SVID"; !strings.Contains(ag.Log(), want) || !strings.Contains(ag.Log(), "give -joinToken") {
			t.Fatalf("log lacks %q:\n%s", want, ag.Log())
		}
	})
}
