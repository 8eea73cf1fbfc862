package test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/hallmarkid/hallmark/test/testenv"
)

// The agent's SPIRE-style API commands through the real binary: fetch a
// JWT-SVID, have the agent validate it (and refuse it for another audience
// or tampered), and watch X.509 updates.
func TestAgentAPICommands(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer()
	ag := env.StartAgent(srv, srv.Token())
	const id = "spiffe://example.org/cli/workload"
	srv.CreateEntry(id, ag.ID(), "-selector", uidSelector())
	waitForSVID(t, ag.Addr(), id)

	out, err := ag.CLI("api", "fetch", "jwt", "-socketPath", ag.SocketPath, "-audience", "billing,audit")
	if err != nil {
		t.Fatalf("api fetch jwt: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`token\(` + regexp.QuoteMeta(id) + `\):\n\t(\S+)\n`).FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "bundle(spiffe://example.org):\n\t{") {
		t.Fatalf("api fetch jwt output:\n%s", out)
	}
	token := m[1]
	if _, err := ag.CLI("api", "fetch", "jwt", "-socketPath", ag.SocketPath); err == nil {
		t.Fatal("api fetch jwt without -audience succeeded")
	}

	out, err = ag.CLI("api", "validate", "jwt", "-socketPath", ag.SocketPath, "-audience", "audit", "-svid", token)
	if err != nil || !strings.Contains(out, "SVID is valid.") || !strings.Contains(out, "SPIFFE ID : "+id) {
		t.Fatalf("api validate jwt: %v\n%s", err, out)
	}
	for name, args := range map[string][]string{
		"other audience": {"-audience", "payments", "-svid", token},
		"tampered":       {"-audience", "audit", "-svid", token[:len(token)-4] + "AAAA"},
	} {
		if out, err := ag.CLI(append([]string{"api", "validate", "jwt", "-socketPath", ag.SocketPath}, args...)...); err == nil {
			t.Fatalf("%s: validated:\n%s", name, out)
		}
	}

	out, err = ag.CLI("api", "watch", "-socketPath", ag.SocketPath, "-count", "1")
	if err != nil || !strings.Contains(out, "Received 1 svid after") || !strings.Contains(out, "SPIFFE ID:\t\t"+id) {
		t.Fatalf("api watch: %v\n%s", err, out)
	}
}
