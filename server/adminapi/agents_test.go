package adminapi_test

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/adminapi"
	"github.com/hallmarkid/hallmark/server/datastore"
	"github.com/hallmarkid/hallmark/server/datastore/sqlite"
	"github.com/hallmarkid/hallmark/server/entrycache"
)

// evictions records the agents whose streams the admin API ended.
type evictions struct {
	mu  sync.Mutex // guards ids
	ids []string
}

func (e *evictions) AgentEvicted(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ids = append(e.ids, id)
}

func (e *evictions) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.ids)
}

type agentFixture struct {
	srv     *adminapi.Server
	store   *sqlite.Store
	audit   *auditLog
	evicted *evictions
	now     time.Time
}

func newAgentFixture(t *testing.T) *agentFixture {
	t.Helper()
	store, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ds.sqlite3"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	fx := &agentFixture{store: store, audit: &auditLog{}, evicted: &evictions{}, now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	fx.srv = adminapi.New(adminapi.Config{TrustDomain: own, ServerID: serverID, Store: store, Entries: entrycache.New(serverID),
		Audit: fx.audit, Evictor: fx.evicted, Clock: func() time.Time { return fx.now }})
	return fx
}

// put stores agents, banning those marked Banned.
func (fx *agentFixture) put(t *testing.T, as ...datastore.Agent) {
	t.Helper()
	for _, a := range as {
		banned := a.Banned
		if err := fx.store.CreateAgent(context.Background(), a); err != nil {
			t.Fatal(err)
		}
		if banned {
			if err := fx.store.BanAgent(context.Background(), a.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func agentRec(path, typ string, expires time.Time, canReattest, banned bool, sels ...string) datastore.Agent {
	a := datastore.Agent{ID: "spiffe://example.org" + path, AttestationType: typ, SerialNumber: "1",
		ExpiresAt: expires, CanReattest: canReattest, Banned: banned}
	for _, s := range sels {
		sel, _ := registration.ParseSelector(s)
		a.Selectors = append(a.Selectors, sel)
	}
	return a
}

func ids(agents []*apiv1.Agent) []string {
	var out []string
	for _, a := range agents {
		out = append(out, a.GetSpiffeId()[len("spiffe://example.org"):])
	}
	return out
}

func TestListAndCountAgentFilters(t *testing.T) {
	fx := newAgentFixture(t)
	soon, later := fx.now.Add(time.Hour), fx.now.Add(48*time.Hour)
	fx.put(t,
		agentRec("/agent/tpm/a", "tpm", soon, true, false, "tpm:ek-hash:a", "tpm:pcr:sha256:7:00"),
		agentRec("/agent/tpm/b", "tpm", later, true, true, "tpm:ek-hash:b", "tpm:pcr:sha256:7:00"),
		agentRec("/agent/join_token/c", "join_token", later, false, false, "join_token:c"),
	)
	yes, no := true, false
	sel := func(ss ...string) []*apiv1.Selector {
		var out []*apiv1.Selector
		for _, s := range ss {
			p, _ := registration.ParseSelector(s)
			out = append(out, &apiv1.Selector{Type: p.Type, Value: p.Value})
		}
		return out
	}
	tests := []struct {
		name    string
		f       *apiv1.AgentFilter
		want    []string
		wantErr codes.Code
	}{
		{name: "none", want: []string{"/agent/join_token/c", "/agent/tpm/a", "/agent/tpm/b"}},
		{name: "attestation type", f: &apiv1.AgentFilter{ByAttestationType: "tpm"}, want: []string{"/agent/tpm/a", "/agent/tpm/b"}},
		{name: "banned", f: &apiv1.AgentFilter{ByBanned: &yes}, want: []string{"/agent/tpm/b"}},
		{name: "not banned", f: &apiv1.AgentFilter{ByBanned: &no}, want: []string{"/agent/join_token/c", "/agent/tpm/a"}},
		{name: "cannot re-attest", f: &apiv1.AgentFilter{ByCanReattest: &no}, want: []string{"/agent/join_token/c"}},
		{name: "expires before", f: &apiv1.AgentFilter{ByExpiresBefore: fx.now.Add(2 * time.Hour).Unix()}, want: []string{"/agent/tpm/a"}},
		{name: "superset (default)", f: &apiv1.AgentFilter{BySelectors: sel("tpm:pcr:sha256:7:00")}, want: []string{"/agent/tpm/a", "/agent/tpm/b"}},
		{name: "exact", f: &apiv1.AgentFilter{BySelectors: sel("tpm:pcr:sha256:7:00", "tpm:ek-hash:a"), SelectorMatch: apiv1.SelectorMatch_SELECTOR_MATCH_EXACT}, want: []string{"/agent/tpm/a"}},
		{name: "exact needs all", f: &apiv1.AgentFilter{BySelectors: sel("tpm:pcr:sha256:7:00"), SelectorMatch: apiv1.SelectorMatch_SELECTOR_MATCH_EXACT}},
		{name: "subset", f: &apiv1.AgentFilter{BySelectors: sel("join_token:c", "tpm:ek-hash:a"), SelectorMatch: apiv1.SelectorMatch_SELECTOR_MATCH_SUBSET}, want: []string{"/agent/join_token/c"}},
		{name: "any", f: &apiv1.AgentFilter{BySelectors: sel("join_token:c", "tpm:ek-hash:b"), SelectorMatch: apiv1.SelectorMatch_SELECTOR_MATCH_ANY}, want: []string{"/agent/join_token/c", "/agent/tpm/b"}},
		{name: "combined", f: &apiv1.AgentFilter{ByAttestationType: "tpm", ByBanned: &no, BySelectors: sel("tpm:pcr:sha256:7:00")}, want: []string{"/agent/tpm/a"}},
		{name: "bad selector", f: &apiv1.AgentFilter{BySelectors: []*apiv1.Selector{{Type: "", Value: "x"}}}, wantErr: codes.InvalidArgument},
		{name: "unknown match", f: &apiv1.AgentFilter{BySelectors: sel("tpm:ek-hash:a"), SelectorMatch: 42}, wantErr: codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			list, err := fx.srv.ListAgents(context.Background(), &apiv1.ListAgentsRequest{Filter: tt.f})
			count, cerr := fx.srv.CountAgents(context.Background(), &apiv1.CountAgentsRequest{Filter: tt.f})
			if tt.wantErr != codes.OK {
				if status.Code(err) != tt.wantErr || status.Code(cerr) != tt.wantErr {
					t.Fatalf("list: %v, count: %v; want %v", err, cerr, tt.wantErr)
				}
				return
			}
			if err != nil || cerr != nil {
				t.Fatalf("list: %v, count: %v", err, cerr)
			}
			if got := ids(list.GetAgents()); !slices.Equal(got, tt.want) {
				t.Fatalf("list = %v, want %v", got, tt.want)
			}
			if int(count.GetCount()) != len(tt.want) {
				t.Fatalf("count = %d, want %d", count.GetCount(), len(tt.want))
			}
		})
	}
}

func TestBanShowEvictAgent(t *testing.T) {
	fx := newAgentFixture(t)
	ctx := context.Background()
	a := agentRec("/agent/tpm/a", "tpm", fx.now.Add(time.Hour), true, false, "tpm:ek-hash:a")
	fx.put(t, a)

	for _, tc := range []struct {
		name string
		id   string
		code codes.Code
	}{
		{name: "unknown", id: "spiffe://example.org/agent/tpm/nobody", code: codes.NotFound},
		{name: "empty", id: "", code: codes.InvalidArgument},
		{name: "malformed", id: "spiffe://example.org/agent/../x", code: codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := fx.srv.BanAgent(ctx, &apiv1.BanAgentRequest{SpiffeId: tc.id}); status.Code(err) != tc.code {
				t.Errorf("ban: %v, want %v", err, tc.code)
			}
			if _, err := fx.srv.GetAgent(ctx, &apiv1.GetAgentRequest{SpiffeId: tc.id}); status.Code(err) != tc.code {
				t.Errorf("show: %v, want %v", err, tc.code)
			}
			if _, err := fx.srv.EvictAgent(ctx, &apiv1.EvictAgentRequest{SpiffeId: tc.id}); status.Code(err) != tc.code {
				t.Errorf("evict: %v, want %v", err, tc.code)
			}
		})
	}
	if len(fx.evicted.list()) != 0 {
		t.Fatalf("streams ended for failed calls: %v", fx.evicted.list())
	}

	if _, err := fx.srv.BanAgent(ctx, &apiv1.BanAgentRequest{SpiffeId: a.ID}); err != nil {
		t.Fatal(err)
	}
	got, err := fx.srv.GetAgent(ctx, &apiv1.GetAgentRequest{SpiffeId: a.ID})
	if err != nil {
		t.Fatal(err)
	}
	want := &apiv1.Agent{SpiffeId: a.ID, AttestationType: "tpm", Selectors: []*apiv1.Selector{{Type: "tpm", Value: "ek-hash:a"}},
		X509SvidSerialNumber: "1", X509SvidExpiresAt: a.ExpiresAt.Unix(), CanReattest: true, Banned: true,
		CreatedAt: got.GetCreatedAt(), UpdatedAt: got.GetUpdatedAt()}
	if !proto.Equal(got, want) {
		t.Fatalf("show = %v, want %v", got, want)
	}
	if ev := fx.evicted.list(); !slices.Equal(ev, []string{a.ID}) {
		t.Fatalf("streams ended: %v, want the banned agent's", ev)
	}
	if r := fx.audit.find("agent_ban"); r == nil || r["agent_id"] != a.ID {
		t.Fatalf("ban audit record: %v", r)
	}

	// Evicting the banned agent deletes the record (unban).
	if _, err := fx.srv.EvictAgent(ctx, &apiv1.EvictAgentRequest{SpiffeId: a.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.store.GetAgent(ctx, a.ID); err == nil {
		t.Fatal("the evicted banned agent's record remains")
	}
	if r := fx.audit.find("agent_evict"); r == nil || r["agent_id"] != a.ID || r["was_banned"] != true {
		t.Fatalf("evict audit record: %v", r)
	}
}

func TestPurgeAgents(t *testing.T) {
	fx := newAgentFixture(t)
	ctx := context.Background()
	long, recent := fx.now.Add(-48*time.Hour), fx.now.Add(-time.Minute)
	fx.put(t,
		agentRec("/agent/tpm/old", "tpm", long, true, false),
		agentRec("/agent/tpm/recent", "tpm", recent, true, false),
		agentRec("/agent/tpm/valid", "tpm", fx.now.Add(time.Hour), true, false),
		agentRec("/agent/tpm/banned", "tpm", long, true, true),
		agentRec("/agent/aws_iid/tofu", "aws_iid", long, false, false),
		agentRec("/agent/tpm/no-expiry", "tpm", time.Time{}, true, false),
	)
	if _, err := fx.srv.PurgeAgents(ctx, &apiv1.PurgeAgentsRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("purge without expired_for: %v, want InvalidArgument", err)
	}
	purged := func(r *apiv1.PurgeAgentsResponse) (ids []string, deleted []bool) {
		for _, a := range r.GetAgents() {
			ids, deleted = append(ids, a.GetAgentId()), append(deleted, a.GetDeleted())
		}
		return ids, deleted
	}

	dry, err := fx.srv.PurgeAgents(ctx, &apiv1.PurgeAgentsRequest{ExpiredForSeconds: 3600, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, del := purged(dry); !slices.Equal(got, []string{"spiffe://example.org/agent/tpm/old"}) || del[0] {
		t.Fatalf("dry run = %v %v, want only the long-expired re-attestable agent, not deleted", got, del)
	}
	if _, err := fx.store.GetAgent(ctx, "spiffe://example.org/agent/tpm/old"); err != nil {
		t.Fatalf("dry run deleted: %v", err)
	}
	if fx.audit.find("agent_purge") != nil {
		t.Fatal("a dry run was audited as a purge")
	}

	res, err := fx.srv.PurgeAgents(ctx, &apiv1.PurgeAgentsRequest{ExpiredForSeconds: 30})
	if err != nil {
		t.Fatal(err)
	}
	got, del := purged(res)
	if !slices.Equal(got, []string{"spiffe://example.org/agent/tpm/old", "spiffe://example.org/agent/tpm/recent"}) || !del[0] || !del[1] {
		t.Fatalf("purge = %v %v", got, del)
	}
	left, err := fx.srv.ListAgents(ctx, &apiv1.ListAgentsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(left.GetAgents()); !slices.Equal(got, []string{"/agent/aws_iid/tofu", "/agent/tpm/banned", "/agent/tpm/no-expiry", "/agent/tpm/valid"}) {
		t.Fatalf("left after purge: %v", got)
	}
	if r := fx.audit.find("agents_purge"); r == nil || r["count"] != 2 {
		t.Fatalf("purge audit summary: %v", r)
	}
	if ev := fx.evicted.list(); len(ev) != 2 {
		t.Fatalf("streams ended: %v", ev)
	}
}
