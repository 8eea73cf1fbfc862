package test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/test/testenv"
)

// Node aliases the SPIRE way: `token generate -spiffeID` and
// `entry create -node` make a workload entry parented by the alias reach
// every matching agent.
func TestNodeAliasEntries(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer()
	tok := srv.Token("-spiffeID", "spiffe://example.org/nodes/web-1")
	ag := env.StartAgent(srv, tok)
	srv.CreateEntry("spiffe://example.org/via-token-alias", "spiffe://example.org/nodes/web-1", "-selector", uidSelector())
	waitForSVID(t, ag.Addr(), "spiffe://example.org/via-token-alias")

	out := srv.MustCLI("entry", "create", "-node", "-spiffeID", "spiffe://example.org/nodes/all-join-token", "-selector", "join_token:"+tok)
	if !strings.Contains(out, "Parent ID        : spiffe://example.org/hallmark/server") {
		t.Fatalf("node entry not parented by the server:\n%s", out)
	}
	srv.CreateEntry("spiffe://example.org/via-node-entry", "spiffe://example.org/nodes/all-join-token", "-selector", uidSelector())
	waitForSVID(t, ag.Addr(), "spiffe://example.org/via-node-entry")

	// An agent whose selectors do not match gets neither.
	other := env.StartAgent(srv, srv.Token())
	srv.CreateEntry("spiffe://example.org/other-marker", other.ID(), "-selector", uidSelector())
	c := waitForSVID(t, other.Addr(), "spiffe://example.org/other-marker")
	for _, s := range c.SVIDs {
		if strings.HasPrefix(s.ID.Path(), "/via-") {
			t.Fatalf("non-matching agent received %s", s.ID)
		}
	}
}

func TestCLIShowDeleteAndFormats(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer()

	// SPIRE's -data format, IDs as strings and as {trust_domain, path}.
	data := `{"entries": [
	  {"spiffe_id": "spiffe://example.org/a", "parent_id": "spiffe://example.org/agent/x",
	   "selectors": [{"type": "unix", "value": "uid:1"}], "x509_svid_ttl": 300, "dns_names": ["a.example.org"]},
	  {"spiffe_id": {"trust_domain": "example.org", "path": "/b"}, "parent_id": {"trust_domain": "example.org", "path": "/agent/x"},
	   "selectors": [{"type": "unix", "value": "uid:2"}], "hint": "b"}
	]}`
	path := filepath.Join(env.Dir, "entries.json")
	must(t, os.WriteFile(path, []byte(data), 0o600))
	srv.MustCLI("entry", "create", "-data", path)
	// The same again: duplicates are reported and the command fails.
	if out, err := srv.CLI("entry", "create", "-data", path); err == nil || !strings.Contains(out, "similar entry already exists") {
		t.Fatalf("duplicate create: err=%v\n%s", err, out)
	}
	// An invalid SPIFFE ID is refused with the reason.
	if out, err := srv.CLI("entry", "create", "-spiffeID", "spiffe://example.org/a/../b", "-parentID", "spiffe://example.org/agent/x", "-selector", "unix:uid:1"); err == nil || !strings.Contains(out, "dot segment") {
		t.Fatalf("dot segment accepted: err=%v\n%s", err, out)
	}
	if out, err := srv.CLI("entry", "create", "-spiffeID", "spiffe://other.org/a", "-parentID", "spiffe://example.org/agent/x", "-selector", "unix:uid:1"); err == nil || !strings.Contains(out, "not in trust domain") {
		t.Fatalf("foreign trust domain accepted: err=%v\n%s", err, out)
	}

	var list struct {
		Entries []struct {
			ID       string `json:"id"`
			SpiffeID struct {
				TrustDomain string `json:"trust_domain"`
				Path        string `json:"path"`
			} `json:"spiffe_id"`
			X509SvidTTL int      `json:"x509_svid_ttl"`
			DNSNames    []string `json:"dns_names"`
			Hint        string   `json:"hint"`
		} `json:"entries"`
	}
	must(t, json.Unmarshal([]byte(srv.MustCLI("entry", "show", "-output", "json")), &list))
	if len(list.Entries) != 2 || list.Entries[0].SpiffeID.TrustDomain != "example.org" || list.Entries[0].SpiffeID.Path != "/a" ||
		list.Entries[0].X509SvidTTL != 300 || list.Entries[0].DNSNames[0] != "a.example.org" || list.Entries[1].Hint != "b" {
		t.Fatalf("entry show -output json: %+v", list)
	}
	out := srv.MustCLI("entry", "show", "-selector", "unix:uid:2")
	if !strings.Contains(out, "Found 1 entry") || !strings.Contains(out, "spiffe://example.org/b") {
		t.Fatalf("entry show -selector:\n%s", out)
	}
	srv.MustCLI("entry", "delete", "-entryID", list.Entries[0].ID)
	if out := srv.MustCLI("entry", "show", "-spiffeID", "spiffe://example.org/a"); !strings.Contains(out, "Found 0 entries") {
		t.Fatalf("deleted entry still listed:\n%s", out)
	}
	if out, err := srv.CLI("entry", "delete", "-entryID", "no-such-entry"); err == nil || !strings.Contains(out, "not found") {
		t.Fatalf("deleting an unknown entry: err=%v\n%s", err, out)
	}

	b, err := spiffebundle.Parse(spiffeid.RequireTrustDomainFromString("example.org"), []byte(srv.MustCLI("bundle", "show", "-format", "spiffe")))
	if err != nil || len(b.X509Authorities()) != 1 {
		t.Fatalf("bundle show -format spiffe: %v", err)
	}
	if pem := srv.MustCLI("bundle", "show"); !strings.HasPrefix(pem, "-----BEGIN CERTIFICATE-----") {
		t.Fatalf("bundle show: %q", pem)
	}
}

func TestInsecureBootstrap(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer()
	ag := env.StartAgent(srv, srv.Token(), testenv.InsecureBootstrap())
	if !strings.Contains(ag.Log(), "INSECURE BOOTSTRAP") {
		t.Fatal("insecure bootstrap was not logged loudly")
	}
	srv.CreateEntry("spiffe://example.org/insecure-boot", ag.ID(), "-selector", uidSelector())
	waitForSVID(t, ag.Addr(), "spiffe://example.org/insecure-boot")
}
