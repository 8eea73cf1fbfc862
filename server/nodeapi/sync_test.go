package nodeapi_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/hallmarkid/hallmark/agent/client"
	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/internal/x509util"
	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/nodeapi"
	"github.com/hallmarkid/hallmark/server/nodeapi/nodeapitest"
)

var (
	td      = nodeapitest.TrustDomain
	partner = spiffeid.RequireTrustDomainFromString("partner.test")
	other   = spiffeid.RequireTrustDomainFromString("other.test")
)

// agentClient returns the real agent client connected as a.
func agentClient(tb testing.TB, e *nodeapitest.Env, a *nodeapitest.Agent) *client.Client {
	tb.Helper()
	c, err := client.New(client.Config{Address: e.Addr, TrustDomain: td, Bundle: e.CA.Bundle()})
	if err != nil {
		tb.Fatal(err)
	}
	c.SetSVID(a.SVID)
	tb.Cleanup(func() { c.Close() })
	return c
}

type syncStream = grpc.ServerStreamingClient[apiv1.SyncResponse]

func openSync(tb testing.TB, c *client.Client, req *apiv1.SyncRequest) (syncStream, context.CancelFunc) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	s, err := c.Sync(ctx, req)
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	return s, cancel
}

func upsertIDs(m *apiv1.SyncResponse) []string {
	var ids []string
	for _, u := range m.GetUpserts() {
		ids = append(ids, u.GetId())
	}
	slices.Sort(ids)
	return ids
}

func sorted(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// fiveEntries puts entries a..e for ag and an entry of another agent, and
// returns the revision they are current to.
func fiveEntries(e *nodeapitest.Env, ag, stranger *nodeapitest.Agent) int64 {
	var es []registration.Entry
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		es = append(es, nodeapitest.Entry(ag, id))
	}
	e.Put(nodeapitest.Entry(stranger, "theirs"))
	return e.Put(es...)
}

func TestSyncFirstMessage(t *testing.T) {
	all := []string{"a", "b", "c", "d", "e"}
	tests := []struct {
		name string
		// away changes the server while the agent is away and returns the
		// request the agent resumes with; rev is what it last saw.
		away        func(e *nodeapitest.Env, ag, stranger *nodeapitest.Agent, rev int64) *apiv1.SyncRequest
		wantFull    bool
		wantUpserts []string
		wantDeleted []string
		wantErr     string
	}{
		{
			name: "empty request: full snapshot as before",
			away: func(*nodeapitest.Env, *nodeapitest.Agent, *nodeapitest.Agent, int64) *apiv1.SyncRequest {
				return &apiv1.SyncRequest{}
			},
			wantFull:    true,
			wantUpserts: all,
		},
		{
			name: "nothing changed",
			away: func(_ *nodeapitest.Env, _, _ *nodeapitest.Agent, rev int64) *apiv1.SyncRequest {
				return &apiv1.SyncRequest{SinceRevision: rev, HeldEntryIds: all}
			},
		},
		{
			name: "one entry changed",
			away: func(e *nodeapitest.Env, ag, _ *nodeapitest.Agent, rev int64) *apiv1.SyncRequest {
				c := nodeapitest.Entry(ag, "c")
				c.DNSNames = []string{"c.example.org"}
				e.Put(c)
				return &apiv1.SyncRequest{SinceRevision: rev, HeldEntryIds: all}
			},
			wantUpserts: []string{"c"},
		},
		{
			name: "entry added and entry deleted",
			away: func(e *nodeapitest.Env, ag, _ *nodeapitest.Agent, rev int64) *apiv1.SyncRequest {
				e.Put(nodeapitest.Entry(ag, "f"))
				e.Delete("b")
				return &apiv1.SyncRequest{SinceRevision: rev, HeldEntryIds: all}
			},
			wantUpserts: []string{"f"},
			wantDeleted: []string{"b"},
		},
		{
			name: "another agent's change is not sent",
			away: func(e *nodeapitest.Env, _, stranger *nodeapitest.Agent, rev int64) *apiv1.SyncRequest {
				e.Put(nodeapitest.Entry(stranger, "theirs"))
				return &apiv1.SyncRequest{SinceRevision: rev, HeldEntryIds: all}
			},
		},
		{
			name: "held entry the agent lost is sent again",
			away: func(_ *nodeapitest.Env, _, _ *nodeapitest.Agent, rev int64) *apiv1.SyncRequest {
				return &apiv1.SyncRequest{SinceRevision: rev, HeldEntryIds: []string{"b", "c", "d", "e"}}
			},
			wantUpserts: []string{"a"},
		},
		{
			name: "held IDs not authorised are deleted, never sent",
			away: func(_ *nodeapitest.Env, _, _ *nodeapitest.Agent, rev int64) *apiv1.SyncRequest {
				return &apiv1.SyncRequest{SinceRevision: rev, HeldEntryIds: append(slices.Clone(all), "theirs", "unknown", "a")}
			},
			wantDeleted: []string{"theirs", "unknown"},
		},
		{
			name: "agent ahead of the server: full snapshot",
			away: func(_ *nodeapitest.Env, _, _ *nodeapitest.Agent, rev int64) *apiv1.SyncRequest {
				return &apiv1.SyncRequest{SinceRevision: rev + 100, HeldEntryIds: all}
			},
			wantFull:    true,
			wantUpserts: all,
		},
		{
			name: "negative revision",
			away: func(*nodeapitest.Env, *nodeapitest.Agent, *nodeapitest.Agent, int64) *apiv1.SyncRequest {
				return &apiv1.SyncRequest{SinceRevision: -1}
			},
			wantErr: "since_revision must not be negative",
		},
		{
			name: "held IDs without a revision",
			away: func(*nodeapitest.Env, *nodeapitest.Agent, *nodeapitest.Agent, int64) *apiv1.SyncRequest {
				return &apiv1.SyncRequest{HeldEntryIds: all}
			},
			wantErr: "held entry IDs without since_revision",
		},
		{
			name: "too many held IDs",
			away: func(_ *nodeapitest.Env, _, _ *nodeapitest.Agent, rev int64) *apiv1.SyncRequest {
				return &apiv1.SyncRequest{SinceRevision: rev, HeldEntryIds: make([]string, nodeapi.MaxHeldEntryIDs+1)}
			},
			wantErr: "at most 100000 held entry IDs",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := nodeapitest.New(t)
			ag, stranger := e.NewAgent("me"), e.NewAgent("stranger")
			rev := fiveEntries(e, ag, stranger)
			c := agentClient(t, e, ag)
			req := tt.away(e, ag, stranger, rev)
			s, cancel := openSync(t, c, req)
			defer cancel()
			msg, err := s.Recv()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if msg.GetFull() != tt.wantFull || msg.GetResumed() == tt.wantFull {
				t.Errorf("full=%v resumed=%v, want full=%v and resumed the opposite", msg.GetFull(), msg.GetResumed(), tt.wantFull)
			}
			if got := upsertIDs(msg); !slices.Equal(got, sorted(tt.wantUpserts)) {
				t.Errorf("upserts = %v, want %v", got, tt.wantUpserts)
			}
			if got := sorted(msg.GetDeletedIds()); !slices.Equal(got, sorted(tt.wantDeleted)) {
				t.Errorf("deleted = %v, want %v", got, tt.wantDeleted)
			}
			if msg.GetRevision() != e.Entries.Revision() || msg.GetBundle() == nil || !msg.GetFederatedComplete() {
				t.Errorf("revision=%d (want %d), bundle=%v, federated_complete=%v: want the revision, the bundle and the federated set",
					msg.GetRevision(), e.Entries.Revision(), msg.GetBundle() != nil, msg.GetFederatedComplete())
			}
		})
	}
}

// After a resumption the stream carries deltas against what the agent
// holds, exactly as after a snapshot.
func TestSyncDeltasAfterResume(t *testing.T) {
	e := nodeapitest.New(t)
	ag, stranger := e.NewAgent("me"), e.NewAgent("stranger")
	rev := fiveEntries(e, ag, stranger)
	c := agentClient(t, e, ag)
	s, cancel := openSync(t, c, &apiv1.SyncRequest{SinceRevision: rev, HeldEntryIds: []string{"a", "b", "c", "d", "e"}})
	defer cancel()
	if msg, err := s.Recv(); err != nil || !msg.GetResumed() || len(msg.GetUpserts()) != 0 {
		t.Fatalf("first message %v, %v: want an empty resumption", msg, err)
	}
	d := nodeapitest.Entry(ag, "d")
	d.Hint = "changed"
	e.Put(d)
	msg, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got := upsertIDs(msg); msg.GetFull() || msg.GetResumed() || !slices.Equal(got, []string{"d"}) || msg.GetUpserts()[0].GetHint() != "changed" {
		t.Fatalf("delta upserts %v (full=%v resumed=%v), want only the changed d", got, msg.GetFull(), msg.GetResumed())
	}
	e.Delete("a")
	if msg, err = s.Recv(); err != nil || !slices.Equal(msg.GetDeletedIds(), []string{"a"}) || len(msg.GetUpserts()) != 0 {
		t.Fatalf("delta %v, %v: want a deleted only", msg, err)
	}
}

func fedByTD(msg *apiv1.SyncResponse) map[string]*apiv1.FederatedBundle {
	m := map[string]*apiv1.FederatedBundle{}
	for _, b := range msg.GetFederatedBundles() {
		m[b.GetTrustDomain()] = b
	}
	return m
}

func recvFederated(t *testing.T, s syncStream) *apiv1.SyncResponse {
	t.Helper()
	msg, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(msg.GetFederatedBundles()) == 0 || msg.GetFederatedComplete() || len(msg.GetUpserts()) > 0 {
		t.Fatalf("got %v, want a message of federated changes only", msg)
	}
	return msg
}

func TestSyncFederatedBundles(t *testing.T) {
	e := nodeapitest.New(t)
	ag := e.NewAgent("me")
	pb := nodeapitest.ForeignBundle(t, partner, true)
	e.Federation.Set(partner, pb)
	e.Federation.Set(other, nodeapitest.ForeignBundle(t, other, false))
	// A source that lists our own trust domain must not make agents
	// trust anything new for it.
	e.Federation.Set(td, nodeapitest.ForeignBundle(t, td, false))
	c := agentClient(t, e, ag)
	s, cancel := openSync(t, c, nil)
	defer cancel()

	first, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if !first.GetFederatedComplete() {
		t.Fatal("first message does not carry the complete federated set")
	}
	var names []string
	for _, b := range first.GetFederatedBundles() {
		names = append(names, b.GetTrustDomain())
	}
	if !slices.Equal(names, []string{"other.test", "partner.test"}) {
		t.Fatalf("federated trust domains %v, want [other.test partner.test] (never our own)", names)
	}
	got := fedByTD(first)["partner.test"]
	if len(got.GetX509Authorities()) != 1 || !bytes.Equal(got.GetX509Authorities()[0], pb.X509Authorities()[0].Raw) {
		t.Fatal("partner.test X.509 authority not sent as DER")
	}
	if len(got.GetJwtKeys()) != 1 || got.GetJwtKeys()[0].GetKeyId() != "k-partner.test" {
		t.Fatalf("partner.test JWT keys %v, want k-partner.test", got.GetJwtKeys())
	}
	// The client parses what the server sends back into the same bundle.
	ptd, parsed, err := client.ParseFederatedBundle(got)
	if err != nil || ptd != partner || !parsed.Equal(pb) {
		t.Fatalf("ParseFederatedBundle: %v, %v; want the partner bundle back", ptd, err)
	}

	// Setting the same keys again sends nothing; a rotation sends only
	// the rotated trust domain.
	e.Federation.Set(other, e.Federation.Bundles()[other])
	rotated := nodeapitest.ForeignBundle(t, partner, false)
	e.Federation.Set(partner, rotated)
	msg := recvFederated(t, s)
	if m := fedByTD(msg); len(m) != 1 || m["partner.test"] == nil ||
		!slices.EqualFunc(m["partner.test"].GetX509Authorities(), x509util.DERs(rotated.X509Authorities()), bytes.Equal) ||
		len(m["partner.test"].GetJwtKeys()) != 0 {
		t.Fatalf("after rotating partner.test got %v, want only its new bundle", msg.GetFederatedBundles())
	}

	// Revocation: the fetcher holds an empty bundle.
	e.Federation.Set(other, spiffebundle.New(other))
	if m := fedByTD(recvFederated(t, s)); len(m) != 1 || m["other.test"] == nil || len(m["other.test"].GetX509Authorities()) != 0 {
		t.Fatalf("after revoking other.test got %v, want it empty", m)
	}
	// Removal: the trust domain is gone from the source.
	e.Federation.Set(partner, nil)
	if m := fedByTD(recvFederated(t, s)); len(m) != 1 || m["partner.test"] == nil || len(m["partner.test"].GetX509Authorities()) != 0 {
		t.Fatalf("after removing partner.test got %v, want it empty", m)
	}

	// A new stream gets the complete set as it is now.
	s2, cancel2 := openSync(t, c, nil)
	defer cancel2()
	msg, err = s2.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if m := fedByTD(msg); !msg.GetFederatedComplete() || len(m) != 1 || len(m["other.test"].GetX509Authorities()) != 0 {
		t.Fatalf("reconnect: complete=%v %v, want only the revoked other.test", msg.GetFederatedComplete(), m)
	}
}

// BenchmarkSyncFirstMessage compares the first message an agent holding
// 10,000 entries gets on reconnecting after one change: the full snapshot
// (empty request) against the resumption (revision and held IDs).
func BenchmarkSyncFirstMessage(b *testing.B) {
	const n = 10000
	e := nodeapitest.New(b)
	ag := e.NewAgent("big")
	es := make([]registration.Entry, n)
	ids := make([]string, n)
	for i := range es {
		ids[i] = fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)
		es[i] = nodeapitest.Entry(ag, ids[i])
		es[i].DNSNames = []string{fmt.Sprintf("w%d.example.org", i)}
	}
	rev := e.Put(es...)
	changed := es[n/2]
	changed.Hint = "changed"
	e.Put(changed)
	c := agentClient(b, e, ag)

	for _, bc := range []struct {
		name string
		req  *apiv1.SyncRequest
		want int
	}{
		{"full", &apiv1.SyncRequest{}, n},
		{"delta", &apiv1.SyncRequest{SinceRevision: rev, HeldEntryIds: ids}, 1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var size int
			for b.Loop() {
				s, cancel := openSync(b, c, bc.req)
				msg, err := s.Recv()
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				if len(msg.GetUpserts()) != bc.want {
					b.Fatalf("%d upserts, want %d", len(msg.GetUpserts()), bc.want)
				}
				size = proto.Size(msg)
			}
			b.ReportMetric(float64(size), "resp-bytes")
			b.ReportMetric(float64(proto.Size(bc.req)), "req-bytes")
		})
	}
}
