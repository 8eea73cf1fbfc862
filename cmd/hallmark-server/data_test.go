package main

import (
	"strings"
	"testing"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
)

func TestParseEntries(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		wantIDs []string
		check   func(t *testing.T, es []*apiv1.Entry)
		wantErr string
	}{
		{name: "SPIRE update format", wantIDs: []string{"e1", "e2"}, data: `{"entries": [
			{"entry_id": "e1", "spiffe_id": "spiffe://example.org/a", "parent_id": "spiffe://example.org/agent",
			 "selectors": [{"type": "unix", "value": "uid:1"}], "x509_svid_ttl": 60, "jwt_svid_ttl": 30,
			 "dns_names": ["a.example.org"], "federates_with": ["spiffe://other.org"], "hint": "h", "admin": true},
			{"entry_id": "e2", "spiffe_id": {"trust_domain": "example.org", "path": "/b"},
			 "parent_id": {"trust_domain": "example.org", "path": "/agent"}, "selectors": [{"type": "unix", "value": "uid:2"}]}]}`},
		{name: "id as entry show -output json names it", wantIDs: []string{"e1"},
			data: `{"entries": [{"id": "e1", "spiffe_id": "spiffe://example.org/a", "parent_id": "spiffe://example.org/p"}]}`},
		{name: "create keeps IDs", wantIDs: []string{"x", "y"},
			data: `{"entries": [{"id": "x", "spiffe_id": "spiffe://example.org/a"}, {"entry_id": "y", "spiffe_id": "spiffe://example.org/b"}]}`},
		{name: "entry_id and id", wantErr: "both entry_id and id",
			data: `{"entries": [{"id": "x", "entry_id": "y"}]}`},
		{name: "unknown field", wantErr: "entry 0", data: `{"entries": [{"spiffe": "x"}]}`},
		{name: "null entry", wantErr: "not an object", data: `{"entries": [null]}`},
		{name: "not JSON", wantErr: "invalid character", data: `entries:`},
		{name: "bad ID object", wantErr: "spiffe_id", data: `{"entries": [{"spiffe_id": {"path": 1}}]}`},
		{name: "TTL not a number", wantErr: "entry 0", data: `{"entries": [{"x509_svid_ttl": "1h"}]}`},
		{name: "no entries", wantIDs: nil, data: `{}`},
		{name: "SPIRE entry show output", wantIDs: []string{"e1"}, data: `{"entries": [{"id": "e1",
			"spiffe_id": {"trust_domain": "example.org", "path": "/n"}, "parent_id": {"trust_domain": "example.org", "path": "/spire/server"},
			"selectors": [{"type": "k8s_psat", "value": "cluster:c"}], "x509_svid_ttl": 0, "federates_with": [], "admin": false,
			"downstream": false, "expires_at": "0", "dns_names": [], "revision_number": "7", "store_svid": false,
			"jwt_svid_ttl": 0, "hint": "", "created_at": "1700000000"}], "next_page_token": ""}`,
			check: func(t *testing.T, es []*apiv1.Entry) {
				if es[0].GetParentId() != "spiffe://example.org/hallmark/server" || es[0].GetRevision() != 0 || es[0].GetCreatedAt() != 0 {
					t.Errorf("node entry not mapped or server fields kept: %v", es[0])
				}
			}},
		{name: "legacy ttl", wantIDs: []string{"", ""}, data: `{"entries": [{"spiffe_id": "spiffe://example.org/a", "ttl": 90},
			{"spiffe_id": "spiffe://example.org/b", "ttl": 90, "x509_svid_ttl": 30, "entryExpiry": 0}]}`,
			check: func(t *testing.T, es []*apiv1.Entry) {
				if es[0].GetX509SvidTtl() != 90 || es[1].GetX509SvidTtl() != 30 || es[0].GetJwtSvidTtl() != 0 {
					t.Errorf("ttl: %v", es)
				}
			}},
		{name: "agent parent kept", wantIDs: []string{""}, data: `{"entries": [{"parent_id": "spiffe://example.org/spire/server/x"}]}`,
			check: func(t *testing.T, es []*apiv1.Entry) {
				if es[0].GetParentId() != "spiffe://example.org/spire/server/x" {
					t.Errorf("parent rewritten: %v", es[0])
				}
			}},
		{name: "SPIRE k8s_psat and aws_iid agents are Hallmark's", wantIDs: []string{"", ""}, data: `{"entries": [
			{"parent_id": {"trust_domain": "example.org", "path": "/spire/agent/k8s_psat/prod/7f3c"}},
			{"parent_id": "spiffe://example.org/spire/agent/aws_iid/123456789012/eu-west-1/i-0abc"}]}`,
			check: func(t *testing.T, es []*apiv1.Entry) {
				if es[0].GetParentId() != "spiffe://example.org/agent/k8s_psat/prod/7f3c" ||
					es[1].GetParentId() != "spiffe://example.org/agent/aws_iid/123456789012/eu-west-1/i-0abc" {
					t.Errorf("agent parents: %v", es)
				}
			}},
		{name: "SPIRE join token agent", wantErr: "parent_id spiffe://example.org/spire/agent/join_token/abc: an entry parented to a SPIRE join_token agent",
			data: `{"entries": [{"parent_id": {"trust_domain": "example.org", "path": "/spire/agent/join_token/abc"}}]}`},
		{name: "SPIRE x509pop agent", wantErr: "SPIRE x509pop agent never matches",
			data: `{"entries": [{"parent_id": "spiffe://example.org/spire/agent/x509pop/abc"}]}`},
		{name: "entryExpiry set", wantErr: "entryExpiry 1552410266: Hallmark entries do not expire",
			data: `{"entries": [{"spiffe_id": "spiffe://example.org/a", "entryExpiry": 1552410266}]}`},
		{name: "expires_at set", wantErr: "entry 1: expires_at 5",
			data: `{"entries": [{"expires_at": "0"}, {"expires_at": "5"}]}`},
		{name: "store_svid set", wantErr: "store_svid: Hallmark has no SVIDStore",
			data: `{"entries": [{"store_svid": true}]}`},
		{name: "bad ttl", wantErr: "ttl", data: `{"entries": [{"ttl": "soon"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			es, err := parseEntries([]byte(tt.data), "test.json")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(es) != len(tt.wantIDs) {
				t.Fatalf("%d entries, want %d", len(es), len(tt.wantIDs))
			}
			for i, e := range es {
				if e.GetId() != tt.wantIDs[i] {
					t.Errorf("entry %d ID %q, want %q", i, e.GetId(), tt.wantIDs[i])
				}
			}
			if tt.check != nil {
				tt.check(t, es)
			}
			if tt.name == "SPIRE update format" {
				e := es[0]
				if e.GetX509SvidTtl() != 60 || e.GetJwtSvidTtl() != 30 || e.GetHint() != "h" || !e.GetAdmin() ||
					len(e.GetDnsNames()) != 1 || len(e.GetFederatesWith()) != 1 || e.GetSelectors()[0].GetValue() != "uid:1" {
					t.Errorf("fields lost: %v", e)
				}
				if es[1].GetSpiffeId() != "spiffe://example.org/b" || es[1].GetParentId() != "spiffe://example.org/agent" {
					t.Errorf("ID objects: %v", es[1])
				}
			}
		})
	}
}

func TestUpdateFromFlags(t *testing.T) {
	base := updateFlags{entryID: "e1", spiffeID: "spiffe://example.org/w", parentID: "spiffe://example.org/agent",
		selectors: []string{"unix:uid:1", "unix:gid:2"}}
	with := func(f func(u *updateFlags)) updateFlags { u := base; f(&u); return u }
	tests := []struct {
		name       string
		f          updateFlags
		wantParent string
		wantErr    string
	}{
		{name: "ok", f: base, wantParent: "spiffe://example.org/agent"},
		{name: "node", f: with(func(u *updateFlags) { u.parentID, u.node = "", true }), wantParent: "spiffe://example.org/hallmark/server"},
		{name: "no entry ID", f: with(func(u *updateFlags) { u.entryID = "" }), wantErr: "-entryID is required"},
		{name: "no SPIFFE ID", f: with(func(u *updateFlags) { u.spiffeID = "" }), wantErr: "-spiffeID is required"},
		{name: "no parent", f: with(func(u *updateFlags) { u.parentID = "" }), wantErr: "-parentID is required"},
		{name: "node and parent", f: with(func(u *updateFlags) { u.node = true }), wantErr: "mutually exclusive"},
		{name: "no selector", f: with(func(u *updateFlags) { u.selectors = nil }), wantErr: "at least one -selector"},
		{name: "bad selector", f: with(func(u *updateFlags) { u.selectors = []string{"unix"} }), wantErr: "selector"},
		{name: "negative TTL", f: with(func(u *updateFlags) { u.x509TTL = -1 }), wantErr: "out of range"},
		{name: "huge TTL", f: with(func(u *updateFlags) { u.jwtTTL = 1 << 31 }), wantErr: "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := updateFromFlags(tt.f)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if e.GetId() != "e1" || e.GetParentId() != tt.wantParent || len(e.GetSelectors()) != 2 {
				t.Errorf("entry %v", e)
			}
		})
	}
}

// FuzzParseEntries: the -data parser of entry create and entry update
// never panics, and an entry parsed without error is never nil and never
// keeps SPIRE's server parent.
func FuzzParseEntries(f *testing.F) {
	for _, s := range []string{
		`{"entries": [{"entry_id": "e1", "spiffe_id": "spiffe://example.org/a", "parent_id": "spiffe://example.org/p",
			"selectors": [{"type": "unix", "value": "uid:1"}], "x509_svid_ttl": 60, "dns_names": ["a"], "federates_with": ["spiffe://o.org"]}]}`,
		`{"entries": [{"id": "e1", "spiffe_id": {"trust_domain": "example.org", "path": "/b"}}]}`,
		`{"entries": [null, {}, []]}`,
		`{"entries": {}}`,
		`{"entries": [{"spiffe_id": {"trust_domain": 1}}]}`,
		`{"entries": [{"id": "x", "entry_id": "y"}]}`,
		`{"entries": [{"parent_id": {"trust_domain": "example.org", "path": "/spire/server"}, "ttl": "60", "expires_at": "0", "store_svid": false, "revision_number": "3"}]}`,
		`{"entries": [{"entryExpiry": 1, "ttl": null}]}`,
		`[]`, `null`, ``, `{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		es, err := parseEntries(data, "fuzz.json")
		if err != nil {
			return
		}
		for _, e := range es {
			if e == nil {
				t.Fatal("nil entry without an error")
			}
			if strings.HasSuffix(e.GetParentId(), "/spire/server") && strings.Count(e.GetParentId(), "/") == 4 {
				t.Fatalf("SPIRE server parent kept: %q", e.GetParentId())
			}
		}
	})
}
