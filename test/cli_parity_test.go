package test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hallmarkid/hallmark/test/testenv"
)

// TestCLIEntrySPIREParity: a SPIRE operator's entry scripts against the
// real server. `entry show -selector k8s:ns:demo` finds an entry that also
// has k8s:sa:web (SPIRE's default superset match; before, the match was
// exact and it found nothing), the other match modes and `entry count`
// agree, -entryID and a SPIRE export's IDs are honoured, SPIRE's server
// parent becomes Hallmark's, admin entries are refused rather than stored
// and ignored, and `entry delete -file` deletes a batch.
func TestCLIEntrySPIREParity(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer()

	srv.MustCLI("entry", "create", "-entryID", "web-entry", "-spiffeID", "spiffe://example.org/web",
		"-parentID", "spiffe://example.org/agent/x", "-selector", "k8s:ns:demo", "-selector", "k8s:sa:web")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-selector", "k8s:ns:demo"}, "Found 1 entry"},
		{[]string{"-selector", "k8s:ns:demo", "-matchSelectorsOn", "exact"}, "Found 0 entries"},
		{[]string{"-selector", "k8s:ns:demo", "-selector", "k8s:sa:web", "-matchSelectorsOn", "exact"}, "Found 1 entry"},
		{[]string{"-selector", "k8s:ns:other", "-selector", "k8s:sa:web", "-matchSelectorsOn", "any"}, "Found 1 entry"},
		{[]string{"-selector", "k8s:ns:demo", "-matchSelectorsOn", "subset"}, "Found 0 entries"},
	} {
		if out := srv.MustCLI(append([]string{"entry", "show"}, tt.args...)...); !strings.Contains(out, tt.want) {
			t.Errorf("entry show %v: want %q:\n%s", tt.args, tt.want, out)
		}
	}
	var count struct {
		Count int `json:"count"`
	}
	must(t, json.Unmarshal([]byte(srv.MustCLI("entry", "count", "-selector", "k8s:ns:demo", "-output", "json")), &count))
	if count.Count != 1 {
		t.Errorf("entry count -selector k8s:ns:demo = %d, want 1", count.Count)
	}

	// A SPIRE `entry show -output json` export: IDs kept, SPIRE's server
	// parent mapped onto Hallmark's node-entry parent.
	export := `{"entries": [{"id": "node-entry", "spiffe_id": {"trust_domain": "example.org", "path": "/nodes/demo"},
	  "parent_id": {"trust_domain": "example.org", "path": "/spire/server"}, "selectors": [{"type": "join_token", "value": "abc"}],
	  "x509_svid_ttl": 0, "federates_with": [], "admin": false, "downstream": false, "expires_at": "0", "dns_names": [],
	  "revision_number": "4", "store_svid": false, "jwt_svid_ttl": 0, "hint": "", "created_at": "1700000000"}], "next_page_token": ""}`
	path := filepath.Join(env.Dir, "export.json")
	must(t, os.WriteFile(path, []byte(export), 0o600))
	srv.MustCLI("entry", "create", "-data", path)
	var shown struct {
		Entries []struct {
			ID       string `json:"id"`
			ParentID struct {
				TrustDomain string `json:"trust_domain"`
				Path        string `json:"path"`
			} `json:"parent_id"`
		} `json:"entries"`
	}
	must(t, json.Unmarshal([]byte(srv.MustCLI("entry", "show", "-entryID", "node-entry", "-output", "json")), &shown))
	if len(shown.Entries) != 1 || shown.Entries[0].ParentID.Path != "/hallmark/server" {
		t.Fatalf("imported node entry: %+v", shown)
	}

	// Refused, never stored and ignored.
	if out, err := srv.CLI("entry", "create", "-spiffeID", "spiffe://example.org/adm", "-parentID", "spiffe://example.org/agent/x",
		"-selector", "unix:uid:1", "-admin"); err == nil || !strings.Contains(out, "-admin is not supported") {
		t.Errorf("-admin: err=%v\n%s", err, out)
	}
	must(t, os.WriteFile(path, []byte(`{"entries": [{"spiffe_id": "spiffe://example.org/adm", "parent_id": "spiffe://example.org/agent/x",
	  "selectors": [{"type": "unix", "value": "uid:1"}], "admin": true}]}`), 0o600))
	if out, err := srv.CLI("entry", "create", "-data", path); err == nil || !strings.Contains(out, "admin entries are not supported") {
		t.Errorf("-data with admin: err=%v\n%s", err, out)
	}
	if out := srv.MustCLI("entry", "count"); !strings.Contains(out, "2 registration entries") {
		t.Fatalf("entry count after refusals:\n%s", out)
	}

	must(t, os.WriteFile(path, []byte(`{"ids": ["web-entry", "node-entry"]}`), 0o600))
	var del struct {
		Results []struct {
			Status struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"status"`
			ID string `json:"id"`
		} `json:"results"`
	}
	must(t, json.Unmarshal([]byte(srv.MustCLI("entry", "delete", "-file", path, "-output", "json")), &del))
	if len(del.Results) != 2 || del.Results[0].Status.Code != 0 || del.Results[1].ID != "node-entry" {
		t.Fatalf("entry delete -file: %+v", del)
	}
	if out := srv.MustCLI("entry", "count"); !strings.Contains(out, "0 registration entries") {
		t.Fatalf("entry count after delete -file:\n%s", out)
	}

	// bundle show and token generate in SPIRE's JSON shapes.
	var b struct {
		TrustDomain     string `json:"trust_domain"`
		X509Authorities []struct {
			ASN1 []byte `json:"asn1"`
		} `json:"x509_authorities"`
		JWTAuthorities []struct {
			KeyID string `json:"key_id"`
		} `json:"jwt_authorities"`
		SequenceNumber string `json:"sequence_number"`
	}
	must(t, json.Unmarshal([]byte(srv.MustCLI("bundle", "show", "-output", "json")), &b))
	if b.TrustDomain != "example.org" || len(b.X509Authorities) != 1 || len(b.X509Authorities[0].ASN1) == 0 || len(b.JWTAuthorities) == 0 {
		t.Fatalf("bundle show -output json: %+v", b)
	}
	var tok struct {
		Value     string `json:"value"`
		ExpiresAt string `json:"expires_at"`
	}
	must(t, json.Unmarshal([]byte(srv.MustCLI("token", "generate", "-output", "json")), &tok))
	if tok.Value == "" || tok.ExpiresAt == "" {
		t.Fatalf("token generate -output json: %+v", tok)
	}
}
