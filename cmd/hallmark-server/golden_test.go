package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// fakeAdmin is an in-process admin server on a real unix socket that
// answers with fixed entries and records what it was asked.
type fakeAdmin struct {
	apiv1.UnimplementedAdminServer

	mu    sync.Mutex
	calls []proto.Message // guarded by mu
}

func (f *fakeAdmin) record(m proto.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, proto.Clone(m))
}

func (f *fakeAdmin) requests() []proto.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]proto.Message(nil), f.calls...)
}

var goldenEntries = []*apiv1.Entry{
	{Id: "0193a5c4-0000-7000-8000-000000000001", SpiffeId: "spiffe://example.org/web", ParentId: "spiffe://example.org/agent/join_token/abc",
		Selectors: []*apiv1.Selector{{Type: "k8s", Value: "sa:web"}, {Type: "k8s", Value: "ns:demo"}}, X509SvidTtl: 3600, JwtSvidTtl: 300,
		DnsNames: []string{"web.example.org"}, FederatesWith: []string{"spiffe://partner.test"}, Hint: "front", Revision: 7, CreatedAt: 1733400000},
	{Id: "0193a5c4-0000-7000-8000-000000000002", SpiffeId: "spiffe://example.org/nodes/demo", ParentId: "spiffe://example.org/hallmark/server",
		Selectors: []*apiv1.Selector{{Type: "k8s_psat", Value: "cluster:demo"}}, Revision: 8, CreatedAt: 1733400001},
}

func (f *fakeAdmin) ListEntries(_ context.Context, req *apiv1.ListEntriesRequest) (*apiv1.ListEntriesResponse, error) {
	f.record(req)
	if req.GetId() == "missing" {
		return &apiv1.ListEntriesResponse{}, nil
	}
	return &apiv1.ListEntriesResponse{Entries: goldenEntries}, nil
}

func (f *fakeAdmin) CountEntries(_ context.Context, req *apiv1.ListEntriesRequest) (*apiv1.CountEntriesResponse, error) {
	f.record(req)
	return &apiv1.CountEntriesResponse{Count: int32(len(goldenEntries))}, nil
}

// CreateEntries succeeds for every entry but one whose SPIFFE ID ends in
// /dup.
func (f *fakeAdmin) CreateEntries(_ context.Context, req *apiv1.CreateEntriesRequest) (*apiv1.CreateEntriesResponse, error) {
	f.record(req)
	resp := &apiv1.CreateEntriesResponse{}
	for i, e := range req.GetEntries() {
		if filepath.Base(e.GetSpiffeId()) == "dup" {
			resp.Results = append(resp.Results, &apiv1.EntryResult{Entry: e, Error: "similar entry already exists", Code: int32(codes.AlreadyExists)})
			continue
		}
		out := proto.Clone(e).(*apiv1.Entry)
		if out.Id == "" {
			out.Id = "0193a5c4-0000-7000-8000-00000000010" + string(rune('0'+i))
		}
		out.Revision, out.CreatedAt = int64(10+i), 1733400100
		resp.Results = append(resp.Results, &apiv1.EntryResult{Entry: out})
	}
	return resp, nil
}

func (f *fakeAdmin) UpdateEntries(_ context.Context, req *apiv1.UpdateEntriesRequest) (*apiv1.UpdateEntriesResponse, error) {
	f.record(req)
	resp := &apiv1.UpdateEntriesResponse{}
	for _, e := range req.GetEntries() {
		out := proto.Clone(e).(*apiv1.Entry)
		out.Revision, out.CreatedAt = 20, 1733400000
		resp.Results = append(resp.Results, &apiv1.EntryResult{Entry: out})
	}
	return resp, nil
}

// DeleteEntry knows only goldenEntries' IDs.
func (f *fakeAdmin) DeleteEntry(_ context.Context, req *apiv1.DeleteEntryRequest) (*apiv1.DeleteEntryResponse, error) {
	f.record(req)
	for _, e := range goldenEntries {
		if e.GetId() == req.GetId() {
			return &apiv1.DeleteEntryResponse{Entry: e}, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "entry %q not found", req.GetId())
}

// startFakeAdmin serves a fakeAdmin on a socket in a fresh directory and
// returns it and the socket path.
func startFakeAdmin(t *testing.T) (*fakeAdmin, string) {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "api.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeAdmin{}
	s := grpc.NewServer()
	apiv1.RegisterAdminServer(s, f)
	go s.Serve(l) //nolint:errcheck // ends with Stop
	t.Cleanup(s.Stop)
	return f, sock
}

// runCLI runs hallmark-server with args and returns its exit code and
// output.
func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	rc := run(args, &out, &errb)
	return rc, out.String(), errb.String()
}

// checkGolden compares got with testdata/name.golden (rewritten with
// -update).
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run with -update to accept):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func (f *fakeAdmin) ListFederatedBundles(_ context.Context, req *apiv1.ListFederatedBundlesRequest) (*apiv1.ListFederatedBundlesResponse, error) {
	f.record(req)
	return &apiv1.ListFederatedBundlesResponse{Bundles: []*apiv1.BundleDocument{
		{TrustDomain: "other.test", Document: []byte(`{"keys": [], "spiffe_sequence": 2, "spiffe_refresh_hint": 60}`)},
		{TrustDomain: "partner.test", Document: []byte(`{"keys": []}`)}}}, nil
}

var goldenAuthorities = []*apiv1.LocalAuthority{
	{AuthorityId: "1111111111111111", Status: "old", NotBefore: 1733000000, NotAfter: 1733600000, PublishedAt: 1733000000, ActivatedAt: 1733000000, SubjectKeyId: "aa"},
	{AuthorityId: "2222222222222222", Status: "old", NotBefore: 1733100000, NotAfter: 1733700000, PublishedAt: 1733100000, ActivatedAt: 1733100000, SubjectKeyId: "bb", Tainted: true},
	{AuthorityId: "3333333333333333", Status: "active", NotBefore: 1733200000, NotAfter: 1733800000, PublishedAt: 1733200000, ActivatedAt: 1733200000, SubjectKeyId: "cc"},
}

func (f *fakeAdmin) ListX509Authorities(_ context.Context, req *apiv1.ListLocalAuthoritiesRequest) (*apiv1.ListLocalAuthoritiesResponse, error) {
	f.record(req)
	return &apiv1.ListLocalAuthoritiesResponse{Authorities: goldenAuthorities}, nil
}

func (f *fakeAdmin) PrepareX509Authority(_ context.Context, req *apiv1.PrepareLocalAuthorityRequest) (*apiv1.LocalAuthority, error) {
	f.record(req)
	return &apiv1.LocalAuthority{AuthorityId: "4444444444444444", Status: "prepared", NotAfter: 1733900000, SubjectKeyId: "dd"}, nil
}

func (f *fakeAdmin) ListFederationRelationships(_ context.Context, req *apiv1.ListFederationRelationshipsRequest) (*apiv1.ListFederationRelationshipsResponse, error) {
	f.record(req)
	return &apiv1.ListFederationRelationshipsResponse{Relationships: []*apiv1.FederationRelationship{
		{TrustDomain: "partner.test", BundleEndpointUrl: "https://partner.test/bundle", BundleEndpointProfile: "https_web", HasBundle: true, X509Authorities: 1},
		{TrustDomain: "dyn.test", BundleEndpointUrl: "https://dyn.test:8443", BundleEndpointProfile: "https_spiffe",
			EndpointSpiffeId: "spiffe://dyn.test/spire/server", Dynamic: true, LastAttempt: 1733400000, LastError: "fetch bundle: connection refused",
			RefreshIntervalSeconds: 300},
		{TrustDomain: "other.test", Static: true, HasBundle: true, Revoked: true, HasSequence: true, Sequence: 2},
	}}, nil
}

// fakeCA is a fixed CA certificate (testdata/fake-ca.pem) so that golden
// output holding DER stays the same.
func fakeCA() *x509.Certificate {
	b, err := os.ReadFile(filepath.Join("testdata", "fake-ca.pem"))
	if err != nil {
		panic(err)
	}
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		panic(err)
	}
	return c
}

func (f *fakeAdmin) GetBundle(_ context.Context, req *apiv1.GetBundleRequest) (*apiv1.Bundle, error) {
	f.record(req)
	ca := fakeCA()
	return &apiv1.Bundle{TrustDomain: "example.org", X509Authorities: [][]byte{ca.Raw}, SequenceNumber: 3, RefreshHint: 300,
		TaintedAuthorityKeyIds: [][]byte{ca.SubjectKeyId}}, nil
}

func (f *fakeAdmin) ListJWTAuthorities(_ context.Context, req *apiv1.ListLocalAuthoritiesRequest) (*apiv1.ListLocalAuthoritiesResponse, error) {
	f.record(req)
	pub, _ := x509.MarshalPKIXPublicKey(fakeCA().PublicKey)
	return &apiv1.ListLocalAuthoritiesResponse{Authorities: []*apiv1.LocalAuthority{
		{AuthorityId: "kid-1", Status: "active", NotAfter: 1733900000, PublicKey: pub, Algorithm: "ES256"}}}, nil
}

func (f *fakeAdmin) GenerateJoinToken(_ context.Context, req *apiv1.GenerateJoinTokenRequest) (*apiv1.GenerateJoinTokenResponse, error) {
	f.record(req)
	return &apiv1.GenerateJoinTokenResponse{Token: "0123456789abcdef0123456789abcdef", ExpiresAt: 1733400600}, nil
}

var goldenAgent = &apiv1.Agent{SpiffeId: "spiffe://example.org/agent/tpm/abc", AttestationType: "tpm", X509SvidSerialNumber: "42",
	X509SvidExpiresAt: 1733403600, Selectors: []*apiv1.Selector{{Type: "tpm", Value: "ek-hash:abc"}}, CanReattest: true}

func (f *fakeAdmin) ListAgents(_ context.Context, req *apiv1.ListAgentsRequest) (*apiv1.ListAgentsResponse, error) {
	f.record(req)
	return &apiv1.ListAgentsResponse{Agents: []*apiv1.Agent{goldenAgent}}, nil
}

func (f *fakeAdmin) CountAgents(_ context.Context, req *apiv1.CountAgentsRequest) (*apiv1.CountAgentsResponse, error) {
	f.record(req)
	return &apiv1.CountAgentsResponse{Count: 1}, nil
}

func (f *fakeAdmin) GetAgent(_ context.Context, req *apiv1.GetAgentRequest) (*apiv1.Agent, error) {
	f.record(req)
	return goldenAgent, nil
}

func (f *fakeAdmin) GetLogger(_ context.Context, req *apiv1.GetLoggerRequest) (*apiv1.Logger, error) {
	f.record(req)
	return &apiv1.Logger{CurrentLevel: "debug", LaunchLevel: "info"}, nil
}
