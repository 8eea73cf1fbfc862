package fleet_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/test/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.Cleanup()
	os.Exit(code)
}

// TestFleetSmoke runs the whole fleet scenario with five agents and short
// agent SVIDs, so that the generator cannot rot: every agent attests,
// syncs and holds all its SVIDs, every change reaches the agents that must
// see it, agent SVIDs renew, and a server restart re-mints nothing.
func TestFleetSmoke(t *testing.T) {
	// Under the race detector the daemons are several times slower: a
	// restart can outlast a 4-second agent SVID, and an agent whose SVID
	// expired while it was disconnected is locked out (join tokens are
	// single-use), as a real one would be.
	// The idle phase then outlasts half the agent SVID's life, so that
	// every agent renews before the restart (the scenario is fast enough
	// now to end before half of 15 s otherwise).
	ttl, idle := "4s", time.Second
	if testenv.Race {
		ttl, idle = "15s", 9*time.Second
	}
	res := run(t, scenario{agents: 5, perAgent: 4, shared: 2, backend: "sqlite", samples: 3, idle: idle, agentTTL: ttl})
	c := res.counts
	if c.Errors() != 0 {
		t.Fatalf("fleet errors: %+v\n%s", c, table(res))
	}
	// Storm (5×6) and the re-mint (5×6), plus the 3+5 changed entries at
	// least; a restart adds none.
	if c.Signed < 5*6*2+3+5 {
		t.Errorf("signed %d SVIDs, want at least %d", c.Signed, 5*6*2+3+5)
	}
	if c.Renewals == 0 {
		t.Errorf("no agent SVID was renewed (agent_svid_ttl %s)", ttl)
	}
	for _, f := range res.figures {
		if strings.HasPrefix(f.name, "server restart") && !strings.HasSuffix(f.value, "), 0 SVIDs re-minted") {
			t.Errorf("restart re-minted SVIDs: %s", f.value)
		}
	}
	t.Logf("\n%s", table(res))
}

// BenchmarkFleet runs the fleet scenario once (use -benchtime=1x) with
// FLEET_N agents (default 100) of FLEET_ENTRIES entries each (default
// 20) plus FLEET_SHARED node-alias entries (default 3), against
// FLEET_BACKEND: "sqlite" (one server) or "postgres" (two servers behind
// a balancer). FLEET_IDLE sets the idle-CPU window (default 30s),
// FLEET_SAMPLES the one-entry changes timed (default 100), FLEET_SERVER_HCL
// extra lines for the server block (experiments with other limits). The table is
// logged and, with FLEET_OUT, appended to that file. `make bench-fleet`
// runs it.
func BenchmarkFleet(b *testing.B) {
	sc := scenario{
		agents: envInt(b, "FLEET_N", 100), perAgent: envInt(b, "FLEET_ENTRIES", 20), shared: envInt(b, "FLEET_SHARED", 3),
		backend: envString("FLEET_BACKEND", "sqlite"), samples: envInt(b, "FLEET_SAMPLES", 100),
		idle: time.Duration(envInt(b, "FLEET_IDLE_SECONDS", 30)) * time.Second,
	}
	if sc.backend != "sqlite" && sc.backend != "postgres" {
		b.Fatalf("FLEET_BACKEND %q: want sqlite or postgres", sc.backend)
	}
	for range b.N {
		res := run(b, sc)
		out := table(res)
		b.Logf("\n%s", out)
		if path := os.Getenv("FLEET_OUT"); path != "" {
			f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				b.Fatal(err)
			}
			_, err = f.WriteString(out + "\n")
			f.Close()
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}

// table renders a run as a Markdown table, each figure with its load
// average.
func table(r *result) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "### %d agents × (%d + %d shared) entries, %s, %s\n\n", r.sc.agents, r.sc.perAgent, r.sc.shared,
		r.sc.backend, time.Now().UTC().Format("2006-01-02 15:04 MST"))
	sb.WriteString("| figure | measured | load average (1/5/15 min) |\n|---|---|---|\n")
	for _, f := range r.figures {
		fmt.Fprintf(&sb, "| %s | %s | %s |\n", f.name, f.value, f.load)
	}
	return sb.String()
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		b.Fatalf("%s=%q: want a whole number", name, v)
	}
	return n
}

func envString(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
