package test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hallmarkid/hallmark/test/testenv"
)

// TestAgentFetchWritesFederatedBundles: `api fetch -write` against a real
// agent whose workload federates with another trust domain writes that
// domain's bundle as federated_bundle.0.0.pem, as SPIRE does (before: only
// svid, key and bundle were written, and bare `api fetch` was unknown);
// `-output json` carries it under federated_bundles.
func TestAgentFetchWritesFederatedBundles(t *testing.T) {
	env := testenv.New(t)
	p := startFederatedPair(t, env)
	ag := env.StartAgent(p.A, p.A.Token())
	const id = "spiffe://example.org/fed-fetch"
	p.A.CreateEntry(id, ag.ID(), "-selector", uidSelector(), "-federatesWith", "spiffe://other.org")
	waitForSVID(t, ag.Addr(), id)
	bOwn := authorities(t, p.B.MustCLI("bundle", "show"))
	waitForBundle(t, ag.Addr(), "other.org", bOwn)

	dir := filepath.Join(env.Dir, "fetched")
	out, err := ag.CLI("api", "fetch", "-socketPath", strings.TrimPrefix(ag.Addr(), "unix://"), "-write", dir)
	if err != nil {
		t.Fatalf("api fetch -write: %v\n%s", err, out)
	}
	if !strings.Contains(out, "Writing federated bundle #0 for trust domain spiffe://other.org") {
		t.Fatalf("api fetch -write output:\n%s", out)
	}
	fed, err := os.ReadFile(filepath.Join(dir, "federated_bundle.0.0.pem"))
	must(t, err)
	if !sameAuthorities(authorities(t, string(fed)), bOwn) {
		t.Fatal("federated_bundle.0.0.pem is not other.org's bundle")
	}
	for _, f := range []string{"svid.0.pem", "svid.0.key", "bundle.0.pem"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}

	out, err = ag.CLI("api", "fetch", "x509", "-socketPath", strings.TrimPrefix(ag.Addr(), "unix://"), "-output", "json")
	if err != nil {
		t.Fatalf("api fetch x509 -output json: %v\n%s", err, out)
	}
	var resp struct {
		Svids []struct {
			SpiffeID string `json:"spiffe_id"`
		} `json:"svids"`
		FederatedBundles map[string][]byte `json:"federated_bundles"`
	}
	must(t, json.Unmarshal([]byte(out), &resp))
	if len(resp.Svids) != 1 || resp.Svids[0].SpiffeID != id || len(resp.FederatedBundles["spiffe://other.org"]) == 0 {
		t.Fatalf("api fetch x509 -output json:\n%s", out)
	}
}
