package adminapi_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/internal/apiconv"
	"github.com/hallmarkid/hallmark/server/adminapi"
	"github.com/hallmarkid/hallmark/server/datastore/sqlite"
	"github.com/hallmarkid/hallmark/server/entrycache"
)

type updateFixture struct {
	srv   *adminapi.Server
	store *sqlite.Store
	cache *entrycache.Cache
	audit *auditLog
}

var serverID = spiffeid.RequireFromPath(own, "/hallmark/server")

func newUpdateFixture(t testing.TB) *updateFixture {
	t.Helper()
	store, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ds.sqlite3"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	fx := &updateFixture{store: store, cache: entrycache.New(serverID), audit: &auditLog{}}
	fx.srv = adminapi.New(adminapi.Config{TrustDomain: own, ServerID: serverID, Store: store, Entries: fx.cache, Audit: fx.audit})
	return fx
}

func pentry(spiffeID, parent string, sels ...string) *apiv1.Entry {
	p := &apiv1.Entry{SpiffeId: "spiffe://example.org" + spiffeID, ParentId: "spiffe://example.org" + parent}
	for _, s := range sels {
		typ, val, _ := strings.Cut(s, ":")
		p.Selectors = append(p.Selectors, &apiv1.Selector{Type: typ, Value: val})
	}
	return p
}

func (fx *updateFixture) create(t testing.TB, ps ...*apiv1.Entry) []*apiv1.Entry {
	t.Helper()
	resp, err := fx.srv.CreateEntries(context.Background(), &apiv1.CreateEntriesRequest{Entries: ps})
	if err != nil {
		t.Fatal(err)
	}
	var out []*apiv1.Entry
	for _, r := range resp.GetResults() {
		if r.GetError() != "" {
			t.Fatalf("create: %s", r.GetError())
		}
		out = append(out, r.GetEntry())
	}
	return out
}

// TestUpdateEntries sends one batch with an update of each kind of field
// and each refusal; every element succeeds or fails alone.
func TestUpdateEntries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fx := newUpdateFixture(t)
	created := fx.create(t, pentry("/web", "/agent/1", "unix:uid:1"), pentry("/db", "/agent/1", "unix:uid:2"))
	web, db := created[0], created[1]

	with := func(id string, p *apiv1.Entry, f func(p *apiv1.Entry)) *apiv1.Entry {
		p.Id = id
		if f != nil {
			f(p)
		}
		return p
	}
	full := with(web.GetId(), pentry("/web2", "/agent/2", "unix:uid:9", "unix:gid:9"), func(p *apiv1.Entry) {
		p.X509SvidTtl, p.JwtSvidTtl = 3600, 300
		p.DnsNames = []string{"web.example.org"}
		p.FederatesWith = []string{"partner.test"}
		p.Hint = "external"              // admin and downstream are refused: TestCreateEntriesPolicy
		p.Revision, p.CreatedAt = 999, 1 // ignored
	})
	tests := []struct {
		name    string
		p       *apiv1.Entry
		wantErr string
	}{
		{name: "every field", p: full},
		{name: "no ID", p: pentry("/x", "/agent/1", "unix:uid:3"), wantErr: "entry ID is required"},
		{name: "unknown ID", p: with("no-such-entry", pentry("/x", "/agent/1", "unix:uid:3"), nil), wantErr: `entry "no-such-entry" not found`},
		{name: "overlong ID", p: with(strings.Repeat("a", 256), pentry("/x", "/agent/1", "unix:uid:3"), nil), wantErr: "longer than 255"},
		{name: "similar to another entry", p: with(db.GetId(), pentry("/web2", "/agent/2", "unix:gid:9", "unix:uid:9"), nil), wantErr: "similar entry already exists"},
		{name: "no selectors", p: with(db.GetId(), pentry("/x", "/agent/1"), nil), wantErr: "at least one selector"},
		{name: "bad SPIFFE ID", p: with(db.GetId(), pentry("/a/../b", "/agent/1", "unix:uid:3"), nil), wantErr: "dot segment"},
		{name: "other trust domain", p: with(db.GetId(), pentry("/x", "/agent/1", "unix:uid:3"), func(p *apiv1.Entry) {
			p.SpiffeId = "spiffe://other.org/x"
		}), wantErr: "not in trust domain"},
		{name: "the server's own ID", p: with(db.GetId(), pentry("/hallmark/server", "/agent/1", "unix:uid:3"), nil), wantErr: "is reserved"},
		{name: "federates with own trust domain", p: with(db.GetId(), pentry("/x", "/agent/1", "unix:uid:3"), func(p *apiv1.Entry) {
			p.FederatesWith = []string{"example.org"}
		}), wantErr: "own trust domain"},
		{name: "negative TTL", p: with(db.GetId(), pentry("/x", "/agent/1", "unix:uid:3"), func(p *apiv1.Entry) { p.X509SvidTtl = -1 }), wantErr: "negative TTL"},
		{name: "bad DNS name", p: with(db.GetId(), pentry("/x", "/agent/1", "unix:uid:3"), func(p *apiv1.Entry) { p.DnsNames = []string{"a..b"} }), wantErr: "DNS name"},
	}
	req := &apiv1.UpdateEntriesRequest{}
	for _, tt := range tests {
		req.Entries = append(req.Entries, tt.p)
	}
	resp, err := fx.srv.UpdateEntries(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetResults()) != len(tests) {
		t.Fatalf("%d results, want %d", len(resp.GetResults()), len(tests))
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := resp.GetResults()[i]
			if tt.wantErr == "" {
				if r.GetError() != "" {
					t.Fatalf("error %q, want success", r.GetError())
				}
				return
			}
			if !strings.Contains(r.GetError(), tt.wantErr) {
				t.Errorf("error %q, want it to contain %q", r.GetError(), tt.wantErr)
			}
			if !proto.Equal(r.GetEntry(), tt.p) {
				t.Errorf("refused result carries %v, want the request's entry", r.GetEntry())
			}
		})
	}

	got := resp.GetResults()[0].GetEntry()
	want := proto.Clone(full).(*apiv1.Entry)
	want.Revision, want.CreatedAt = got.GetRevision(), web.GetCreatedAt()
	want.FederatesWith = []string{"spiffe://partner.test"} // entries carry trust domains as IDs
	if !proto.Equal(got, want) {
		t.Errorf("updated entry\n got %v\nwant %v", got, want)
	}
	if got.GetRevision() <= db.GetRevision() {
		t.Errorf("revision %d, want > %d", got.GetRevision(), db.GetRevision())
	}
	// The cache (what agents are served from) and the store both hold it.
	cached, ok := fx.cache.Get(web.GetId())
	if !ok || !proto.Equal(apiconv.EntryToProto(cached), got) {
		t.Errorf("cache holds %v, want %v", cached, got)
	}
	if fx.cache.Revision() != got.GetRevision() {
		t.Errorf("cache revision %d, want %d", fx.cache.Revision(), got.GetRevision())
	}
	stored, err := fx.store.GetEntry(ctx, web.GetId())
	if err != nil || !proto.Equal(apiconv.EntryToProto(stored), got) {
		t.Errorf("store holds %v (%v), want %v", stored, err, got)
	}
	// The refused updates left db alone.
	if e, _ := fx.cache.Get(db.GetId()); e.Revision != db.GetRevision() {
		t.Errorf("db entry changed by refused updates: %+v", e)
	}
	list, err := fx.srv.ListEntries(ctx, &apiv1.ListEntriesRequest{ParentId: "spiffe://example.org/agent/2"})
	if err != nil || len(list.GetEntries()) != 1 || list.GetEntries()[0].GetId() != web.GetId() {
		t.Errorf("ListEntries by the new parent = %v, %v", list, err)
	}

	// Audited: one record per element, success and refusals.
	var ok1, rejected int
	fx.audit.mu.Lock()
	for _, r := range fx.audit.records {
		if r["action"] != "entry_update" {
			continue
		}
		switch r["result"] {
		case "ok":
			ok1++
			if r["entry_id"] != web.GetId() || r["spiffe_id"] != "spiffe://example.org/web2" || r["parent_id"] != "spiffe://example.org/agent/2" {
				t.Errorf("audit record %v", r)
			}
		case "rejected":
			rejected++
			if r["reason"] == "" {
				t.Errorf("rejection audited without a reason: %v", r)
			}
		}
	}
	fx.audit.mu.Unlock()
	if ok1 != 1 || rejected != len(tests)-1 {
		t.Errorf("audited %d updates and %d rejections, want 1 and %d", ok1, rejected, len(tests)-1)
	}
}

func TestUpdateEntriesLimits(t *testing.T) {
	t.Parallel()
	fx := newUpdateFixture(t)
	_, err := fx.srv.UpdateEntries(context.Background(), &apiv1.UpdateEntriesRequest{Entries: make([]*apiv1.Entry, adminapi.MaxEntriesPerCall+1)})
	wantCode(t, err, codes.InvalidArgument, "at most")

	if resp, err := fx.srv.UpdateEntries(context.Background(), &apiv1.UpdateEntriesRequest{}); err != nil || len(resp.GetResults()) != 0 {
		t.Errorf("empty batch: %v, %v", resp, err)
	}

	// A canceled call reports the rest of the batch as not attempted.
	e := fx.create(t, pentry("/a", "/agent/1", "unix:uid:1"))[0]
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	upd := proto.Clone(e).(*apiv1.Entry)
	upd.Hint = "x"
	resp, err := fx.srv.UpdateEntries(ctx, &apiv1.UpdateEntriesRequest{Entries: []*apiv1.Entry{upd, upd, upd}})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range resp.GetResults() {
		if r.GetError() == "" {
			t.Errorf("result %d succeeded on a canceled context", i)
		}
		if i > 0 && !strings.HasPrefix(r.GetError(), "not attempted") {
			t.Errorf("result %d: %q, want not attempted", i, r.GetError())
		}
	}
	if got, _ := fx.cache.Get(e.GetId()); got.Hint != "" || got.Revision != e.GetRevision() {
		t.Errorf("entry changed by a canceled update: %+v", got)
	}
}

// TestUpdateAndDeleteRace runs updates and deletes of the same entries at
// once: whatever the interleaving, the cache agents are served from ends
// equal to the store.
func TestUpdateAndDeleteRace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fx := newUpdateFixture(t)
	var ps []*apiv1.Entry
	for i := range 20 {
		ps = append(ps, pentry(fmt.Sprintf("/e%d", i), "/agent/1", "unix:uid:1"))
	}
	created := fx.create(t, ps...)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for round := range 5 {
				for i, e := range created {
					if (i+w+round)%7 == 0 {
						_, _ = fx.srv.DeleteEntry(ctx, &apiv1.DeleteEntryRequest{Id: e.GetId()})
						continue
					}
					upd := proto.Clone(e).(*apiv1.Entry)
					upd.Hint = fmt.Sprintf("w%d-r%d", w, round)
					upd.X509SvidTtl = int32(60 * (w + 1))
					if _, err := fx.srv.UpdateEntries(ctx, &apiv1.UpdateEntriesRequest{Entries: []*apiv1.Entry{upd}}); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	stored, rev, err := fx.store.ListEntries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cached := fx.cache.All()
	key := func(es []*apiv1.Entry) []string {
		var out []string
		for _, e := range es {
			out = append(out, fmt.Sprintf("%s %d %s %d", e.GetId(), e.GetRevision(), e.GetHint(), e.GetX509SvidTtl()))
		}
		slices.Sort(out)
		return out
	}
	var s, c []*apiv1.Entry
	for _, e := range stored {
		s = append(s, apiconv.EntryToProto(e))
	}
	for _, e := range cached {
		c = append(c, apiconv.EntryToProto(e))
	}
	if !slices.Equal(key(s), key(c)) {
		t.Errorf("cache and store differ after concurrent updates and deletes:\nstore %v\ncache %v", key(s), key(c))
	}
	if len(stored) == len(created) {
		t.Error("no delete happened; the test lost its point")
	}
	if last := fx.cache.Revision(); last > rev {
		t.Errorf("cache revision %d ahead of the store's %d", last, rev)
	}
}
