package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
)

// TestEntryGolden: the output of each entry command, pretty and JSON, in
// SPIRE's shapes (testdata/entry_*.golden; go test -run TestEntryGolden
// -update rewrites them).
func TestEntryGolden(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	createFile := write("create.json", `{"entries": [
		{"entry_id": "kept-id", "spiffe_id": "spiffe://example.org/a", "parent_id": "spiffe://example.org/spire/server",
		 "selectors": [{"type": "k8s_psat", "value": "cluster:demo"}], "ttl": 600},
		{"spiffe_id": {"trust_domain": "example.org", "path": "/dup"}, "parent_id": {"trust_domain": "example.org", "path": "/agent/x"},
		 "selectors": [{"type": "unix", "value": "uid:1"}], "revision_number": "3", "expires_at": "0", "store_svid": false}]}`)
	deleteFile := write("delete.json", `{"ids": ["0193a5c4-0000-7000-8000-000000000001", "no-such-entry"]}`)
	tests := []struct {
		name   string
		args   []string
		wantRC int
	}{
		{name: "entry_show_pretty", args: []string{"entry", "show"}},
		{name: "entry_show_json", args: []string{"entry", "show", "-output", "json"}},
		{name: "entry_count_pretty", args: []string{"entry", "count", "-selector", "k8s:ns:demo"}},
		{name: "entry_count_json", args: []string{"entry", "count", "-output", "json"}},
		{name: "entry_create_pretty", args: []string{"entry", "create", "-spiffeID", "spiffe://example.org/b", "-parentID",
			"spiffe://example.org/agent/x", "-selector", "unix:uid:2", "-entryID", "my-id", "-hint", "h"}},
		{name: "entry_create_json", args: []string{"entry", "create", "-data", createFile, "-output", "json"}, wantRC: 1},
		{name: "entry_create_data_pretty", args: []string{"entry", "create", "-data", createFile}, wantRC: 1},
		{name: "entry_update_json", args: []string{"entry", "update", "-entryID", "e1", "-spiffeID", "spiffe://example.org/b",
			"-parentID", "spiffe://example.org/agent/x", "-selector", "unix:uid:3", "-output", "json"}},
		{name: "entry_delete_pretty", args: []string{"entry", "delete", "-entryID", "0193a5c4-0000-7000-8000-000000000002"}},
		{name: "entry_delete_file_json", args: []string{"entry", "delete", "-file", deleteFile, "-output", "json"}, wantRC: 1},
		{name: "entry_delete_file_pretty", args: []string{"entry", "delete", "-file", deleteFile}, wantRC: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, sock := startFakeAdmin(t)
			rc, out, errOut := runCLI(append(tt.args, "-socketPath", sock)...)
			if rc != tt.wantRC {
				t.Fatalf("exit %d, want %d; stderr: %s", rc, tt.wantRC, errOut)
			}
			if strings.HasSuffix(tt.name, "_json") && !json.Valid([]byte(out)) {
				t.Fatalf("not JSON:\n%s", out)
			}
			checkGolden(t, tt.name, out+errOut)
		})
	}
}

// TestEntryFilterRequests: entry show/count send SPIRE's filters, with
// SPIRE's default matching (superset) unless -matchSelectorsOn says
// otherwise; the CLI used to send an exact-match request only.
func TestEntryFilterRequests(t *testing.T) {
	yes := true
	sel := func(t, v string) *apiv1.Selector { return &apiv1.Selector{Type: t, Value: v} }
	tests := []struct {
		name    string
		args    []string
		want    *apiv1.ListEntriesRequest
		wantErr string
	}{
		{name: "selector defaults to superset", args: []string{"entry", "show", "-selector", "k8s:ns:demo"},
			want: &apiv1.ListEntriesRequest{Selectors: []*apiv1.Selector{sel("k8s", "ns:demo")}, SelectorMatch: apiv1.SelectorMatch_SELECTOR_MATCH_SUPERSET}},
		{name: "every filter", args: []string{"entry", "count", "-selector", "k8s:ns:demo", "-matchSelectorsOn", "exact",
			"-federatesWith", "spiffe://partner.test", "-matchFederatesWithOn", "any", "-hint", "front", "-downstream",
			"-spiffeID", "spiffe://example.org/web", "-parentID", "spiffe://example.org/agent/x"},
			want: &apiv1.ListEntriesRequest{SpiffeId: "spiffe://example.org/web", ParentId: "spiffe://example.org/agent/x",
				Selectors: []*apiv1.Selector{sel("k8s", "ns:demo")}, SelectorMatch: apiv1.SelectorMatch_SELECTOR_MATCH_EXACT,
				FederatesWith: []string{"spiffe://partner.test"}, FederatesWithMatch: apiv1.SelectorMatch_SELECTOR_MATCH_ANY,
				Hint: "front", Downstream: &yes}},
		{name: "subset", args: []string{"entry", "show", "-selector", "a:b", "-matchSelectorsOn", "subset"},
			want: &apiv1.ListEntriesRequest{Selectors: []*apiv1.Selector{sel("a", "b")}, SelectorMatch: apiv1.SelectorMatch_SELECTOR_MATCH_SUBSET}},
		{name: "entry ID", args: []string{"entry", "show", "-entryID", "e1"}, want: &apiv1.ListEntriesRequest{Id: "e1"}},
		{name: "entry ID not found", args: []string{"entry", "show", "-entryID", "missing"}, wantErr: "error fetching entry ID missing"},
		{name: "entry ID with others", args: []string{"entry", "show", "-entryID", "e1", "-hint", "x"}, wantErr: "can't be combined"},
		{name: "bad match", args: []string{"entry", "show", "-matchSelectorsOn", "most"}, wantErr: "-matchSelectorsOn"},
		{name: "bad federated domain", args: []string{"entry", "count", "-federatesWith", "spiffe://"}, wantErr: "-federatesWith"},
		{name: "bad SPIFFE ID", args: []string{"entry", "show", "-spiffeID", "example.org/web"}, wantErr: "-spiffeID"},
		{name: "bad output", args: []string{"entry", "show", "-output", "yaml"}, wantErr: "-output"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, sock := startFakeAdmin(t)
			rc, _, errOut := runCLI(append(tt.args, "-socketPath", sock)...)
			if tt.wantErr != "" {
				if rc != 1 || !strings.Contains(errOut, tt.wantErr) {
					t.Fatalf("exit %d, stderr %q, want %q", rc, errOut, tt.wantErr)
				}
				return
			}
			calls := f.requests()
			if rc != 0 || len(calls) != 1 || !proto.Equal(calls[0], tt.want) {
				t.Fatalf("exit %d (%s), requests %v, want %v", rc, errOut, calls, tt.want)
			}
		})
	}
}

// TestEntryUnsupportedFlags: SPIRE's entry flags for features Hallmark
// does not have are refused by name, before anything reaches the server
// (before: -admin and -downstream were stored and ignored, the others
// unknown).
func TestEntryUnsupportedFlags(t *testing.T) {
	base := []string{"-spiffeID", "spiffe://example.org/w", "-parentID", "spiffe://example.org/agent/x", "-selector", "unix:uid:1"}
	for _, verb := range []string{"create", "update"} {
		for _, tt := range []struct {
			flags   []string
			wantErr string
		}{
			{[]string{"-entryExpiry", "1552410266"}, "-entryExpiry is not supported"},
			{[]string{"-storeSVID"}, "-storeSVID is not supported"},
			{[]string{"-jwtSVIDIncludeJTI"}, "-jwtSVIDIncludeJTI is not supported"},
			{[]string{"-disableX509SVIDPrefetch"}, "-disableX509SVIDPrefetch is not supported"},
			{[]string{"-admin"}, "-admin is not supported"},
			{[]string{"-downstream"}, "-downstream is not supported"},
		} {
			t.Run(verb+tt.flags[0], func(t *testing.T) {
				f, sock := startFakeAdmin(t)
				args := append([]string{"entry", verb, "-entryID", "e1"}, base...)
				args = append(append(args, tt.flags...), "-socketPath", sock)
				rc, _, errOut := runCLI(args...)
				if rc != 1 || !strings.Contains(errOut, tt.wantErr) {
					t.Fatalf("exit %d, stderr %q, want %q", rc, errOut, tt.wantErr)
				}
				if n := len(f.requests()); n != 0 {
					t.Fatalf("%d requests reached the server", n)
				}
			})
		}
	}
	// Zero values are SPIRE's defaults and pass.
	f, sock := startFakeAdmin(t)
	args := append(append([]string{"entry", "create", "-entryExpiry", "0", "-storeSVID=false"}, base...), "-socketPath", sock)
	if rc, _, errOut := runCLI(args...); rc != 0 || len(f.requests()) != 1 {
		t.Fatalf("exit %d: %s", rc, errOut)
	}
}

// TestRelativeSocketPath: -socketPath relative to the working directory
// works.
func TestRelativeSocketPath(t *testing.T) {
	_, sock := startFakeAdmin(t)
	t.Chdir(filepath.Dir(sock))
	if rc, out, errOut := runCLI("entry", "count", "-socketPath", "api.sock"); rc != 0 || !strings.Contains(out, "2 registration entries") {
		t.Fatalf("exit %d: %s%s", rc, out, errOut)
	}
}
