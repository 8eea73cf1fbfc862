package adminapi_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/registration"
)

// TestListEntriesFilter: SPIRE's entry show/count filters. The default
// selector match is superset: -selector k8s:ns:demo finds an entry that
// also has k8s:sa:web (before: exact only, so it found nothing).
func TestListEntriesFilter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fx := newUpdateFixture(t)
	web := pentry("/web", "/agent/1", "k8s:ns:demo", "k8s:sa:web")
	web.Hint = "front"
	web.FederatesWith = []string{"spiffe://a.org", "spiffe://b.org"}
	db := pentry("/db", "/agent/1", "k8s:ns:demo")
	db.FederatesWith = []string{"spiffe://a.org"}
	other := pentry("/other", "/agent/2", "k8s:ns:prod", "k8s:sa:web")
	fx.create(t, web, db, other)

	sels := func(ss ...string) []*apiv1.Selector {
		var out []*apiv1.Selector
		for _, s := range ss {
			typ, val, _ := strings.Cut(s, ":")
			out = append(out, &apiv1.Selector{Type: typ, Value: val})
		}
		return out
	}
	yes := true
	tests := []struct {
		name    string
		req     *apiv1.ListEntriesRequest
		want    []string
		wantErr string
	}{
		{name: "all", req: &apiv1.ListEntriesRequest{}, want: []string{"/db", "/other", "/web"}},
		{name: "default is superset", req: &apiv1.ListEntriesRequest{Selectors: sels("k8s:ns:demo")}, want: []string{"/db", "/web"}},
		{name: "exact", req: &apiv1.ListEntriesRequest{Selectors: sels("k8s:ns:demo"), SelectorMatch: apiv1.SelectorMatch_SELECTOR_MATCH_EXACT},
			want: []string{"/db"}},
		{name: "subset", req: &apiv1.ListEntriesRequest{Selectors: sels("k8s:ns:prod", "k8s:sa:web", "k8s:ns:x"),
			SelectorMatch: apiv1.SelectorMatch_SELECTOR_MATCH_SUBSET}, want: []string{"/other"}},
		{name: "any", req: &apiv1.ListEntriesRequest{Selectors: sels("k8s:sa:web", "k8s:ns:none"), SelectorMatch: apiv1.SelectorMatch_SELECTOR_MATCH_ANY},
			want: []string{"/other", "/web"}},
		{name: "superset of two", req: &apiv1.ListEntriesRequest{Selectors: sels("k8s:sa:web", "k8s:ns:demo")}, want: []string{"/web"}},
		{name: "federates with superset", req: &apiv1.ListEntriesRequest{FederatesWith: []string{"spiffe://a.org"}}, want: []string{"/db", "/web"}},
		{name: "federates with exact", req: &apiv1.ListEntriesRequest{FederatesWith: []string{"spiffe://a.org"},
			FederatesWithMatch: apiv1.SelectorMatch_SELECTOR_MATCH_EXACT}, want: []string{"/db"}},
		{name: "federates with bare name", req: &apiv1.ListEntriesRequest{FederatesWith: []string{"b.org"}}, want: []string{"/web"}},
		{name: "hint", req: &apiv1.ListEntriesRequest{Hint: "front"}, want: []string{"/web"}},
		{name: "downstream", req: &apiv1.ListEntriesRequest{Downstream: &yes}, want: nil},
		{name: "parent and selector", req: &apiv1.ListEntriesRequest{ParentId: "spiffe://example.org/agent/2", Selectors: sels("k8s:sa:web")},
			want: []string{"/other"}},
		{name: "bad federated domain", req: &apiv1.ListEntriesRequest{FederatesWith: []string{"spiffe://"}}, wantErr: "federates with"},
		{name: "bad match", req: &apiv1.ListEntriesRequest{SelectorMatch: 9}, wantErr: "unknown selector match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := fx.srv.ListEntries(ctx, tt.req)
			count, cerr := fx.srv.CountEntries(ctx, tt.req)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || cerr == nil {
					t.Fatalf("err = %v / %v, want %q", err, cerr, tt.wantErr)
				}
				return
			}
			if err != nil || cerr != nil {
				t.Fatal(err, cerr)
			}
			var got []string
			for _, e := range resp.GetEntries() {
				got = append(got, strings.TrimPrefix(e.GetSpiffeId(), "spiffe://example.org"))
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) || int(count.GetCount()) != len(tt.want) {
				t.Fatalf("got %v (count %d), want %v", got, count.GetCount(), tt.want)
			}
		})
	}
}

// TestCreateEntriesPolicy: a caller-chosen ID is honoured (SPIRE's
// -entryID and -data entry_id); admin and downstream entries, which
// Hallmark cannot honour, are refused instead of stored and ignored; each
// failure carries its gRPC code.
func TestCreateEntriesPolicy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fx := newUpdateFixture(t)
	mine := pentry("/mine", "/agent/1", "unix:uid:1")
	mine.Id = "my-entry-id"
	admin := pentry("/admin", "/agent/1", "unix:uid:2")
	admin.Admin = true
	down := pentry("/down", "/agent/1", "unix:uid:3")
	down.Downstream = true
	badID := pentry("/bad", "/agent/1", "unix:uid:4")
	badID.Id = "has space"
	dup := pentry("/dup", "/agent/1", "unix:uid:5")
	dup.Id = "my-entry-id"
	resp, err := fx.srv.CreateEntries(ctx, &apiv1.CreateEntriesRequest{Entries: []*apiv1.Entry{mine, admin, down, badID, dup}})
	if err != nil {
		t.Fatal(err)
	}
	r := resp.GetResults()
	if r[0].GetError() != "" || r[0].GetEntry().GetId() != "my-entry-id" || r[0].GetCode() != 0 {
		t.Fatalf("caller-chosen ID: %v", r[0])
	}
	for i, want := range []struct {
		msg  string
		code codes.Code
	}{{"", 0}, {"admin entries are not supported", codes.InvalidArgument}, {"downstream entries are not supported", codes.InvalidArgument},
		{"contains a space", codes.InvalidArgument}, {`entry ID "my-entry-id" is taken`, codes.AlreadyExists}} {
		if i == 0 {
			continue
		}
		if !strings.Contains(r[i].GetError(), want.msg) || codes.Code(r[i].GetCode()) != want.code {
			t.Errorf("entry %d: %q code %d, want %q code %s", i, r[i].GetError(), r[i].GetCode(), want.msg, want.code)
		}
	}
	list, err := fx.srv.ListEntries(ctx, &apiv1.ListEntriesRequest{})
	if err != nil || len(list.GetEntries()) != 1 {
		t.Fatalf("stored %d entries (%v), want 1", len(list.GetEntries()), err)
	}
	// An update cannot make an entry admin or downstream either.
	mine.Admin = true
	up, err := fx.srv.UpdateEntries(ctx, &apiv1.UpdateEntriesRequest{Entries: []*apiv1.Entry{mine, pentry("/x", "/agent/1", "unix:uid:9")}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(up.GetResults()[0].GetError(), "admin entries are not supported") {
		t.Fatalf("admin update: %v", up.GetResults()[0])
	}
	if codes.Code(up.GetResults()[1].GetCode()) != codes.InvalidArgument {
		t.Fatalf("update without ID: %v", up.GetResults()[1])
	}
}

// TestRegistrarEntryIDsReserved: `entry create -entryID` and `entry update`
// refuse IDs under the Kubernetes registrar's prefix, so an operator's
// entry can never collide with (or masquerade as) one the registrar owns.
func TestRegistrarEntryIDsReserved(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fx := newUpdateFixture(t)
	e := pentry("/mine", "/agent/1", "unix:uid:1")
	e.Id = registration.RegistrarEntryIDPrefix + "prod:0123"
	resp, err := fx.srv.CreateEntries(ctx, &apiv1.CreateEntriesRequest{Entries: []*apiv1.Entry{e}})
	if err != nil {
		t.Fatal(err)
	}
	if r := resp.GetResults()[0]; !strings.Contains(r.GetError(), "reserved for the Kubernetes registrar") || codes.Code(r.GetCode()) != codes.InvalidArgument {
		t.Fatalf("create: %v", r)
	}
	up, err := fx.srv.UpdateEntries(ctx, &apiv1.UpdateEntriesRequest{Entries: []*apiv1.Entry{e}})
	if err != nil {
		t.Fatal(err)
	}
	if r := up.GetResults()[0]; !strings.Contains(r.GetError(), "reserved for the Kubernetes registrar") {
		t.Fatalf("update: %v", r)
	}
	if list, err := fx.srv.ListEntries(ctx, &apiv1.ListEntriesRequest{}); err != nil || len(list.GetEntries()) != 0 {
		t.Fatalf("stored %d entries (%v), want 0", len(list.GetEntries()), err)
	}
}
