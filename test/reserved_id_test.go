package test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/datastore/sqlite"
	"github.com/hallmarkid/hallmark/test/testenv"
)

// A workload entry inside the agent namespace would get a workload an SVID
// that names an agent (and, presented to RenewAgent, used to become that
// agent's identity). Entries for the agent namespace and the server's own
// reserved paths are refused however they arrive: entry create, entry
// update, -data files, and token generate's alias entry.
func TestEntriesInReservedNamespacesRefused(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer()
	ag := env.StartAgent(srv, srv.Token())
	victim := "spiffe://example.org/agent/join_token/0123456789abcdef0123456789abcdef"

	for _, id := range []string{
		victim,
		"spiffe://example.org/agent",
		"spiffe://example.org/agent/tpm/whatever",
		"spiffe://example.org/hallmark/server",
		"spiffe://example.org/hallmark/anything",
	} {
		out, err := srv.CLI("entry", "create", "-spiffeID", id, "-parentID", ag.ID(), "-selector", uidSelector())
		if err == nil || !strings.Contains(out, "reserved") {
			t.Errorf("entry create %s: err=%v, want refused as reserved\n%s", id, err, out)
		}
	}
	if out, err := srv.CLI("entry", "create", "-node", "-spiffeID", victim, "-selector", "join_token:x"); err == nil || !strings.Contains(out, "reserved") {
		t.Errorf("node entry in the agent namespace: err=%v\n%s", err, out)
	}

	data := filepath.Join(env.Dir, "reserved.json")
	must(t, os.WriteFile(data, []byte(`{"entries": [
	  {"spiffe_id": "spiffe://example.org/fine", "parent_id": "`+ag.ID()+`", "selectors": [{"type": "unix", "value": "uid:1"}]},
	  {"spiffe_id": {"trust_domain": "example.org", "path": "/agent/join_token/x"}, "parent_id": "`+ag.ID()+`",
	   "selectors": [{"type": "unix", "value": "uid:1"}]}
	]}`), 0o600))
	out, err := srv.CLI("entry", "create", "-data", data)
	if err == nil || !strings.Contains(out, "reserved") {
		t.Errorf("entry create -data with an agent-namespace entry: err=%v\n%s", err, out)
	}

	// Update: an existing entry cannot be moved into the namespace.
	fine := field(srv.MustCLI("entry", "show", "-spiffeID", "spiffe://example.org/fine"), "Entry ID")
	if fine == "" {
		t.Fatal("the valid entry of the -data file was not created")
	}
	if out, err := srv.CLI("entry", "update", "-entryID", fine, "-spiffeID", victim, "-parentID", ag.ID(), "-selector", uidSelector()); err == nil || !strings.Contains(out, "reserved") {
		t.Errorf("entry update into the agent namespace: err=%v\n%s", err, out)
	}
	if out, err := srv.CLI("token", "generate", "-spiffeID", victim); err == nil || !strings.Contains(out, "reserved") {
		t.Errorf("token generate -spiffeID in the agent namespace: err=%v\n%s", err, out)
	}

	// Nothing reserved was stored.
	list := srv.MustCLI("entry", "show")
	for _, line := range strings.Split(list, "\n") {
		if v, ok := strings.CutPrefix(line, "SPIFFE ID        : "); ok && (strings.Contains(v, "/agent") || strings.Contains(v, "/hallmark")) {
			t.Fatalf("reserved SPIFFE ID stored: %s\n%s", v, list)
		}
	}
}

// field returns the value of "label : value" in CLI output.
func field(out, label string) string {
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == label {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// An entry in the agent namespace stored before such entries were refused
// (a database from an older version): the server never signs it, so a
// workload can never hold an SVID naming an agent, and the victim agent
// carries on. (Today's code signed it; the SVID, presented to RenewAgent,
// renewed into the victim agent's identity and locked the victim out.)
func TestLegacyAgentNamespaceEntryIsNeverSigned(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer()
	victim := env.StartAgent(srv, srv.Token())
	attacker := env.StartAgent(srv, srv.Token())
	srv.CreateEntry("spiffe://example.org/marker", attacker.ID(), "-selector", uidSelector())
	waitForSVID(t, attacker.Addr(), "spiffe://example.org/marker")

	srv.Stop()
	store, err := sqlite.Open(context.Background(), filepath.Join(srv.Dir, "data", "datastore.sqlite3"), nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := store.CreateEntries(context.Background(), []registration.Entry{{
		SPIFFEID:  spiffeid.RequireFromString(victim.ID()),
		ParentID:  spiffeid.RequireFromString(attacker.ID()),
		Selectors: []registration.Selector{{Type: "unix", Value: strings.TrimPrefix(uidSelector(), "unix:")}},
	}})
	if err != nil || res[0].Err != nil {
		t.Fatalf("planting the legacy entry: %v %v", err, res)
	}
	store.Close()
	srv.Start()

	srv.CreateEntry("spiffe://example.org/marker-2", attacker.ID(), "-selector", uidSelector())
	c := waitForSVID(t, attacker.Addr(), "spiffe://example.org/marker-2")
	for _, s := range c.SVIDs {
		if s.ID.String() == victim.ID() {
			got, err := renewWith(t, srv, s, nil)
			t.Fatalf("a workload got an SVID naming agent %s; as an agent credential it renewed: %v %v", s.ID, got != nil, err)
		}
	}
	testenv.WaitFor(t, 10*time.Second, "the server to log the refusal", func() bool {
		return strings.Contains(srv.Log(), "reserved")
	})
	if err := victim.Healthy(); err != nil {
		t.Fatalf("victim agent: %v", err)
	}
}
