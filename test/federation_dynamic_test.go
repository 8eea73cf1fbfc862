package test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/test/testenv"
)

// SPIRE's dynamic federation through the real binaries: federation create
// with a bootstrap bundle, fetched at once, shown in SPIRE's JSON, kept
// over a restart, read-only when it comes from the configuration, deleted
// (its bundle no longer trusted); and bundle delete -mode for a static
// bundle that entries federate with.
func TestFederationDynamicCLI(t *testing.T) {
	env := testenv.New(t)
	port := testenv.FreePort(t)
	other := env.StartServer(testenv.WithTrustDomain("other.org"), testenv.WithHCL(fmt.Sprintf(
		"federation {\n  bundle_endpoint {\n    address = \"127.0.0.1\"\n    port = %d\n  }\n}", port)))
	otherURL := fmt.Sprintf("https://127.0.0.1:%d", port)
	otherPEM := filepath.Join(env.Dir, "other.pem")
	must(t, os.WriteFile(otherPEM, []byte(other.MustCLI("bundle", "show")), 0o600))
	a := env.StartServer()

	out := a.MustCLI("federation", "create", "-trustDomain", "other.org", "-bundleEndpointURL", otherURL,
		"-bundleEndpointProfile", "https_spiffe", "-endpointSpiffeID", "spiffe://other.org/hallmark/server",
		"-trustDomainBundlePath", otherPEM, "-output", "json")
	var created struct {
		Results []struct {
			Status struct {
				Code int `json:"code"`
			} `json:"status"`
			FederationRelationship struct {
				TrustDomain string `json:"trust_domain"`
				HTTPSSPIFFE struct {
					EndpointSPIFFEID string `json:"endpoint_spiffe_id"`
				} `json:"https_spiffe"`
				TrustDomainBundle *struct {
					X509Authorities []struct{} `json:"x509_authorities"`
				} `json:"trust_domain_bundle"`
			} `json:"federation_relationship"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil || len(created.Results) != 1 || created.Results[0].Status.Code != 0 ||
		created.Results[0].FederationRelationship.HTTPSSPIFFE.EndpointSPIFFEID != "spiffe://other.org/hallmark/server" ||
		created.Results[0].FederationRelationship.TrustDomainBundle == nil {
		t.Fatalf("federation create -output json: %v\n%s", err, out)
	}
	if out := a.MustCLI("federation", "refresh", "-id", "other.org"); !strings.Contains(out, "Defined by        : federation create (dynamic)") {
		t.Fatalf("federation refresh:\n%s", out)
	}
	if got := authorities(t, a.MustCLI("bundle", "list", "-id", "other.org")); !sameAuthorities(got, authorities(t, other.MustCLI("bundle", "show"))) {
		t.Fatal("the fetched bundle of other.org is not other.org's")
	}
	if out, err := a.CLI("federation", "create", "-trustDomain", "other.org", "-bundleEndpointURL", otherURL,
		"-bundleEndpointProfile", "https_web"); err == nil || !strings.Contains(out, "already exists") {
		t.Fatalf("second create: err=%v\n%s", err, out)
	}
	if out, err := a.CLI("bundle", "delete", "-id", "other.org"); err == nil || !strings.Contains(out, "federates_with") {
		t.Fatalf("bundle delete of a relationship's bundle: err=%v\n%s", err, out)
	}

	// Kept over a restart, still fetched.
	a.Stop()
	a.Start()
	out = a.MustCLI("federation", "show", "-trustDomain", "other.org", "-output", "json")
	var shown struct {
		TrustDomain       string          `json:"trust_domain"`
		BundleEndpointURL string          `json:"bundle_endpoint_url"`
		HTTPSSPIFFE       json.RawMessage `json:"https_spiffe"`
		TrustDomainBundle json.RawMessage `json:"trust_domain_bundle"`
	}
	if err := json.Unmarshal([]byte(out), &shown); err != nil || shown.BundleEndpointURL != otherURL || shown.HTTPSSPIFFE == nil ||
		string(shown.TrustDomainBundle) == "null" {
		t.Fatalf("federation show after restart: %v\n%s", err, out)
	}
	a.MustCLI("federation", "refresh", "-id", "other.org")
	a.MustCLI("federation", "update", "-trustDomain", "other.org", "-bundleEndpointURL", otherURL+"/",
		"-bundleEndpointProfile", "https_spiffe", "-endpointSpiffeID", "spiffe://other.org/hallmark/server")
	if out := a.MustCLI("federation", "show", "-trustDomain", "other.org"); !strings.Contains(out, "Bundle endpoint   : "+otherURL+"/\n") ||
		!strings.Contains(out, "Bundle            : 1 X.509 authority") {
		t.Fatalf("federation show after update:\n%s", out)
	}

	// Deleted: its bundle is no longer held.
	if out := a.MustCLI("federation", "delete", "-id", "other.org"); !strings.Contains(out, "Federation relationship deleted.") {
		t.Fatalf("federation delete:\n%s", out)
	}
	if out, err := a.CLI("bundle", "list", "-id", "other.org"); err == nil || !strings.Contains(out, "NotFound") {
		t.Fatalf("bundle of a deleted relationship still held: err=%v\n%s", err, out)
	}
	if out := a.MustCLI("federation", "list", "-output", "json"); !strings.Contains(out, `"federation_relationships": []`) {
		t.Fatalf("federation list after delete:\n%s", out)
	}

	// bundle delete -mode: a static bundle two entries federate with.
	a.MustCLI("bundle", "set", "-id", "other.org", "-path", otherPEM)
	e1 := a.CreateEntry("spiffe://example.org/fed/one", "spiffe://example.org/agent/x", "-selector", "unix:uid:5001", "-federatesWith", "spiffe://other.org")
	a.CreateEntry("spiffe://example.org/fed/two", "spiffe://example.org/agent/x", "-selector", "unix:uid:5002", "-federatesWith", "spiffe://other.org")
	if out, err := a.CLI("bundle", "delete", "-id", "other.org"); err == nil || !strings.Contains(out, "2 registration entries federate with it") {
		t.Fatalf("bundle delete (restrict): err=%v\n%s", err, out)
	}
	if out := a.MustCLI("bundle", "delete", "-id", "other.org", "-mode", "dissociate", "-output", "json"); !strings.Contains(out, `"message": "OK"`) {
		t.Fatalf("bundle delete -mode dissociate:\n%s", out)
	}
	if out := a.MustCLI("entry", "show", "-entryID", e1); strings.Contains(out, "FederatesWith") {
		t.Fatalf("entry still federates after dissociate:\n%s", out)
	}
	if out := a.MustCLI("entry", "count"); !strings.Contains(out, "2 registration entries") {
		t.Fatalf("dissociate deleted entries:\n%s", out)
	}

	// A relationship of the configuration file is read-only.
	b := env.StartServer(testenv.WithHCL(fmt.Sprintf(`federation {
  federates_with "other.org" {
    bundle_endpoint_url = %q
    bundle_endpoint_profile "https_spiffe" {
      endpoint_spiffe_id = "spiffe://other.org/hallmark/server"
    }
    trust_bundle_path = %q
  }
}`, otherURL, otherPEM)))
	for _, args := range [][]string{
		{"federation", "delete", "-id", "other.org"},
		{"federation", "update", "-trustDomain", "other.org", "-bundleEndpointURL", otherURL, "-bundleEndpointProfile", "https_web"},
	} {
		if out, err := b.CLI(args...); err == nil || !strings.Contains(out, "configured in the server's federation block") {
			t.Fatalf("%v of a configured relationship: err=%v\n%s", args, err, out)
		}
	}

	var recs []map[string]any
	testenv.WaitFor(t, 5*time.Second, "audit records", func() bool {
		recs = readAudit(t, filepath.Join(a.Dir, "data", "audit.log"))
		return find(recs, map[string]any{"kind": "admin", "action": "bundle_delete", "mode": "dissociate"}) != nil
	})
	for _, want := range []map[string]any{
		{"kind": "admin", "action": "federation_create", "trust_domain": "other.org", "bundle": true},
		{"kind": "admin", "action": "federation_create", "trust_domain": "other.org", "result": "rejected"},
		{"kind": "admin", "action": "federation_update", "trust_domain": "other.org"},
		{"kind": "admin", "action": "federation_delete", "trust_domain": "other.org"},
		{"kind": "admin", "action": "bundle_delete", "trust_domain": "other.org", "result": "rejected"},
	} {
		if find(recs, want) == nil {
			t.Errorf("no audit record %v", want)
		}
	}
}
