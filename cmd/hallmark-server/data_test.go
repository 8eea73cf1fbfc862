package main

import (
	"strings"
	"testing"
)

func TestParseEntries(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		keepIDs bool
		wantIDs []string
		wantErr string
	}{
		{name: "SPIRE update format", keepIDs: true, wantIDs: []string{"e1", "e2"}, data: `{"entries": [
			{"entry_id": "e1", "spiffe_id": "spiffe://example.org/a", "parent_id": "spiffe://example.org/agent",
			 "selectors": [{"type": "unix", "value": "uid:1"}], "x509_svid_ttl": 60, "jwt_svid_ttl": 30,
			 "dns_names": ["a.example.org"], "federates_with": ["spiffe://other.org"], "hint": "h", "admin": true},
			{"entry_id": "e2", "spiffe_id": {"trust_domain": "example.org", "path": "/b"},
			 "parent_id": {"trust_domain": "example.org", "path": "/agent"}, "selectors": [{"type": "unix", "value": "uid:2"}]}]}`},
		{name: "id as our JSON output names it", keepIDs: true, wantIDs: []string{"e1"},
			data: `{"entries": [{"id": "e1", "spiffe_id": "spiffe://example.org/a", "parent_id": "spiffe://example.org/p"}]}`},
		{name: "create drops IDs", wantIDs: []string{"", ""},
			data: `{"entries": [{"id": "x", "spiffe_id": "spiffe://example.org/a"}, {"entry_id": "y", "spiffe_id": "spiffe://example.org/b"}]}`},
		{name: "entry_id and id", keepIDs: true, wantErr: "both entry_id and id",
			data: `{"entries": [{"id": "x", "entry_id": "y"}]}`},
		{name: "unknown field", wantErr: "entry 0", data: `{"entries": [{"spiffe": "x"}]}`},
		{name: "null entry", wantErr: "not an object", data: `{"entries": [null]}`},
		{name: "not JSON", wantErr: "invalid character", data: `entries:`},
		{name: "bad ID object", wantErr: "spiffe_id", data: `{"entries": [{"spiffe_id": {"path": 1}}]}`},
		{name: "TTL not a number", wantErr: "entry 0", data: `{"entries": [{"x509_svid_ttl": "1h"}]}`},
		{name: "no entries", wantIDs: nil, data: `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			es, err := parseEntries([]byte(tt.data), "test.json", tt.keepIDs)
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
// never panics, and with keepIDs an entry parsed without error keeps a
// string ID it was given.
func FuzzParseEntries(f *testing.F) {
	for _, s := range []string{
		`{"entries": [{"entry_id": "e1", "spiffe_id": "spiffe://example.org/a", "parent_id": "spiffe://example.org/p",
			"selectors": [{"type": "unix", "value": "uid:1"}], "x509_svid_ttl": 60, "dns_names": ["a"], "federates_with": ["spiffe://o.org"]}]}`,
		`{"entries": [{"id": "e1", "spiffe_id": {"trust_domain": "example.org", "path": "/b"}}]}`,
		`{"entries": [null, {}, []]}`,
		`{"entries": {}}`,
		`{"entries": [{"spiffe_id": {"trust_domain": 1}}]}`,
		`{"entries": [{"id": "x", "entry_id": "y"}]}`,
		`[]`, `null`, ``, `{`,
	} {
		f.Add([]byte(s), true)
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, keepIDs bool) {
		es, err := parseEntries(data, "fuzz.json", keepIDs)
		if err != nil {
			return
		}
		for _, e := range es {
			if e == nil {
				t.Fatal("nil entry without an error")
			}
			if !keepIDs && e.GetId() != "" {
				t.Fatalf("create kept ID %q", e.GetId())
			}
		}
	})
}
