package adminapi_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/server/adminapi"
	"github.com/hallmarkid/hallmark/server/datastore/sqlite"
	"github.com/hallmarkid/hallmark/server/entrycache"
	"github.com/hallmarkid/hallmark/server/federation"
)

var own = spiffeid.RequireTrustDomainFromString("example.org")

// auditLog keeps the records it is given.
type auditLog struct {
	mu      sync.Mutex
	records []map[string]any
}

func (a *auditLog) Record(_ context.Context, kind string, fields map[string]any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f := map[string]any{"kind": kind}
	for k, v := range fields {
		f[k] = v
	}
	a.records = append(a.records, f)
}

// find returns the last record of action.
func (a *auditLog) find(action string) map[string]any {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := len(a.records) - 1; i >= 0; i-- {
		if a.records[i]["action"] == action {
			return a.records[i]
		}
	}
	return nil
}

var serial atomic.Int64

// newCA returns a self-signed CA certificate whose URI SAN is uri.
func newCA(t testing.TB, uri string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: "CA " + uri},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, URIs: []*url.URL{u}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func document(t testing.TB, td string, seq uint64, certs ...*x509.Certificate) []byte {
	t.Helper()
	b := spiffebundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString(td), certs)
	b.SetSequenceNumber(seq)
	doc, err := federation.MarshalBundle(b)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// bundleServer is a loopback https_web bundle endpoint serving doc.
type bundleServer struct {
	*httptest.Server
	mu  sync.Mutex
	doc []byte
}

func (b *bundleServer) set(doc []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.doc = doc
}

func startBundleServer(t testing.TB, doc []byte) *bundleServer {
	t.Helper()
	b := &bundleServer{doc: doc}
	b.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		b.mu.Lock()
		defer b.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b.doc)
	}))
	t.Cleanup(b.Close)
	return b
}

type fixture struct {
	srv   *adminapi.Server
	audit *auditLog
	web   *bundleServer // the endpoint of web.test
}

// newFixture builds an admin API for example.org over a SQLite store and a
// fetcher federating with web.test (https_web, at a loopback endpoint).
func newFixture(t testing.TB, withFederation bool) *fixture {
	t.Helper()
	ctx := context.Background()
	store, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ds.sqlite3"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	fx := &fixture{audit: &auditLog{}, web: startBundleServer(t, document(t, "web.test", 1, newCA(t, "spiffe://web.test")))}
	cfg := adminapi.Config{TrustDomain: own, ServerID: spiffeid.RequireFromPath(own, "/hallmark/server"), Store: store,
		Entries: entrycache.New(spiffeid.RequireFromPath(own, "/hallmark/server")), Audit: fx.audit}
	if withFederation {
		roots := x509.NewCertPool()
		roots.AddCert(fx.web.Certificate())
		f, err := federation.NewFetcher(federation.FetcherConfig{TrustDomain: own, Store: store, WebRoots: roots,
			Relationships: []federation.Relationship{{TrustDomain: spiffeid.RequireTrustDomainFromString("web.test"),
				URL: fx.web.URL, Profile: federation.ProfileHTTPSWeb}}})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Federation = f
	}
	fx.srv = adminapi.New(cfg)
	return fx
}

func wantCode(t *testing.T, err error, code codes.Code, substr string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), substr) {
		t.Fatalf("error %v, want %s containing %q", err, code, substr)
	}
}

func TestSetFederatedBundle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fx := newFixture(t, true)
	staticCA := newCA(t, "spiffe://static.test")
	tests := []struct {
		name     string
		td       string
		doc      []byte
		wantCode codes.Code
		wantErr  string
	}{
		{name: "static by name", td: "static.test", doc: document(t, "static.test", 4, staticCA)},
		{name: "static by ID", td: "spiffe://static.test", doc: document(t, "static.test", 5, staticCA)},
		{name: "override of a relationship", td: "web.test", doc: document(t, "web.test", 1, newCA(t, "spiffe://web.test"))},
		{name: "own trust domain", td: "example.org", doc: document(t, "example.org", 1, newCA(t, "spiffe://example.org")),
			wantCode: codes.InvalidArgument, wantErr: "own trust domain"},
		{name: "own trust domain as ID", td: "spiffe://example.org", doc: document(t, "example.org", 1, newCA(t, "spiffe://example.org")),
			wantCode: codes.InvalidArgument, wantErr: "own trust domain"},
		{name: "no trust domain", doc: document(t, "static.test", 1, staticCA), wantCode: codes.InvalidArgument, wantErr: "required"},
		{name: "bad trust domain", td: "Static.test", doc: document(t, "static.test", 1, staticCA),
			wantCode: codes.InvalidArgument, wantErr: "trust domain"},
		{name: "authority of another trust domain", td: "static.test", doc: document(t, "victim.test", 1, newCA(t, "spiffe://victim.test")),
			wantCode: codes.InvalidArgument, wantErr: `names "spiffe://victim.test"`},
		{name: "not a bundle", td: "static.test", doc: []byte(`-----BEGIN CERTIFICATE-----`),
			wantCode: codes.InvalidArgument, wantErr: "parse bundle"},
		{name: "oversized", td: "static.test", doc: make([]byte, federation.MaxBundleSize+1),
			wantCode: codes.InvalidArgument, wantErr: "larger than the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := fx.srv.SetFederatedBundle(ctx, &apiv1.SetFederatedBundleRequest{
				Bundle: &apiv1.BundleDocument{TrustDomain: tt.td, Document: tt.doc}})
			rec := fx.audit.find("bundle_set")
			if tt.wantErr != "" {
				wantCode(t, err, tt.wantCode, tt.wantErr)
				if rec == nil || rec["result"] != "rejected" {
					t.Fatalf("refusal not audited: %v", rec)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rec == nil || rec["result"] != nil || rec["x509_authorities"] != 1 {
				t.Fatalf("audit record %v", rec)
			}
			if want := !strings.Contains(tt.td, "web.test"); resp.GetRelationship().GetStatic() != want {
				t.Fatalf("static = %v, want %v", resp.GetRelationship().GetStatic(), want)
			}
		})
	}
	// Our own trust domain never shows up, whatever was attempted.
	list, err := fx.srv.ListFederatedBundles(ctx, &apiv1.ListFederatedBundlesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range list.GetBundles() {
		names = append(names, b.GetTrustDomain())
	}
	if fmt.Sprint(names) != "[static.test web.test]" {
		t.Fatalf("bundles %v", names)
	}
	one, err := fx.srv.ListFederatedBundles(ctx, &apiv1.ListFederatedBundlesRequest{TrustDomain: "spiffe://static.test"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := spiffebundle.Parse(spiffeid.RequireTrustDomainFromString("static.test"), one.GetBundles()[0].GetDocument())
	if err != nil || !b.HasX509Authority(staticCA) {
		t.Fatalf("listed static bundle: %v", err)
	}
	if seq, _ := b.SequenceNumber(); seq != 5 {
		t.Fatalf("sequence %d, want 5", seq)
	}
	_, err = fx.srv.ListFederatedBundles(ctx, &apiv1.ListFederatedBundlesRequest{TrustDomain: "unknown.test"})
	wantCode(t, err, codes.NotFound, "unknown.test")
	_, err = fx.srv.ListFederatedBundles(ctx, &apiv1.ListFederatedBundlesRequest{TrustDomain: "example.org"})
	wantCode(t, err, codes.InvalidArgument, "own trust domain")
}

func TestDeleteFederatedBundle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fx := newFixture(t, true)
	if _, err := fx.srv.SetFederatedBundle(ctx, &apiv1.SetFederatedBundleRequest{Bundle: &apiv1.BundleDocument{
		TrustDomain: "static.test", Document: document(t, "static.test", 1, newCA(t, "spiffe://static.test"))}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		td       string
		wantCode codes.Code
		wantErr  string
	}{
		{name: "static", td: "static.test"},
		{name: "again", td: "static.test", wantCode: codes.NotFound, wantErr: "no federates_with relationship or static bundle"},
		{name: "relationship", td: "web.test", wantCode: codes.FailedPrecondition, wantErr: "configured with federates_with"},
		{name: "own", td: "example.org", wantCode: codes.InvalidArgument, wantErr: "own trust domain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := fx.srv.DeleteFederatedBundle(ctx, &apiv1.DeleteFederatedBundleRequest{TrustDomain: tt.td})
			rec := fx.audit.find("bundle_delete")
			if tt.wantErr != "" {
				wantCode(t, err, tt.wantCode, tt.wantErr)
				if rec["result"] != "rejected" {
					t.Fatalf("refusal not audited: %v", rec)
				}
				return
			}
			if err != nil || rec["result"] != nil || rec["trust_domain"] != tt.td {
				t.Fatalf("delete: %v, audit %v", err, rec)
			}
		})
	}
	if _, err := fx.srv.ListFederatedBundles(ctx, &apiv1.ListFederatedBundlesRequest{TrustDomain: "static.test"}); status.Code(err) != codes.NotFound {
		t.Fatalf("deleted bundle still listed: %v", err)
	}
}

func TestFederationRelationshipsAndRefresh(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fx := newFixture(t, true)
	if _, err := fx.srv.SetFederatedBundle(ctx, &apiv1.SetFederatedBundleRequest{Bundle: &apiv1.BundleDocument{
		TrustDomain: "static.test", Document: document(t, "static.test", 1, newCA(t, "spiffe://static.test"))}}); err != nil {
		t.Fatal(err)
	}
	list, err := fx.srv.ListFederationRelationships(ctx, &apiv1.ListFederationRelationshipsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	rels := list.GetRelationships()
	if len(rels) != 2 || rels[0].GetTrustDomain() != "web.test" || rels[0].GetHasBundle() || rels[0].GetBundleEndpointUrl() != fx.web.URL ||
		rels[0].GetBundleEndpointProfile() != "https_web" || rels[1].GetTrustDomain() != "static.test" || !rels[1].GetStatic() {
		t.Fatalf("relationships %v", rels)
	}

	st, err := fx.srv.RefreshFederatedBundle(ctx, &apiv1.RefreshFederatedBundleRequest{TrustDomain: "web.test"})
	if err != nil {
		t.Fatal(err)
	}
	if !st.GetHasBundle() || st.GetSequence() != 1 || st.GetX509Authorities() != 1 || st.GetLastSuccess() == 0 || st.GetLastError() != "" {
		t.Fatalf("after refresh: %v", st)
	}
	if rec := fx.audit.find("federation_refresh"); rec["result"] != "ok" {
		t.Fatalf("audit %v", rec)
	}

	tests := []struct {
		name     string
		td       string
		serve    []byte
		wantCode codes.Code
		wantErr  string
	}{
		{name: "endpoint serves another trust domain", td: "web.test", serve: document(t, "victim.test", 2, newCA(t, "spiffe://victim.test")),
			wantCode: codes.Unavailable, wantErr: `names "spiffe://victim.test"`},
		{name: "sequence rolled back", td: "web.test", serve: document(t, "web.test", 0, newCA(t, "spiffe://web.test")),
			wantCode: codes.Unavailable, wantErr: "rolled back"},
		{name: "static", td: "static.test", wantCode: codes.FailedPrecondition, wantErr: "no endpoint"},
		{name: "unknown", td: "unknown.test", wantCode: codes.NotFound, wantErr: "no federation relationship"},
		{name: "own", td: "example.org", wantCode: codes.InvalidArgument, wantErr: "own trust domain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.serve != nil {
				fx.web.set(tt.serve)
			}
			_, err := fx.srv.RefreshFederatedBundle(ctx, &apiv1.RefreshFederatedBundleRequest{TrustDomain: tt.td})
			wantCode(t, err, tt.wantCode, tt.wantErr)
			if rec := fx.audit.find("federation_refresh"); rec["result"] == "ok" {
				t.Fatalf("failure audited as ok: %v", rec)
			}
		})
	}
	// The rejected bundles changed nothing; the status names the last reason.
	list, err = fx.srv.ListFederationRelationships(ctx, &apiv1.ListFederationRelationshipsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r := list.GetRelationships()[0]; r.GetSequence() != 1 || !strings.Contains(r.GetLastError(), "rolled back") {
		t.Fatalf("after rejections: %v", r)
	}
}

// Without federation the listings are empty and changes are refused.
func TestFederationDisabled(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fx := newFixture(t, false)
	if l, err := fx.srv.ListFederatedBundles(ctx, &apiv1.ListFederatedBundlesRequest{}); err != nil || len(l.GetBundles()) != 0 {
		t.Fatalf("list: %v %v", l, err)
	}
	if l, err := fx.srv.ListFederationRelationships(ctx, &apiv1.ListFederationRelationshipsRequest{}); err != nil || len(l.GetRelationships()) != 0 {
		t.Fatalf("relationships: %v %v", l, err)
	}
	_, err := fx.srv.SetFederatedBundle(ctx, &apiv1.SetFederatedBundleRequest{Bundle: &apiv1.BundleDocument{
		TrustDomain: "static.test", Document: document(t, "static.test", 1, newCA(t, "spiffe://static.test"))}})
	wantCode(t, err, codes.FailedPrecondition, "federation is not enabled")
	_, err = fx.srv.RefreshFederatedBundle(ctx, &apiv1.RefreshFederatedBundleRequest{TrustDomain: "static.test"})
	wantCode(t, err, codes.NotFound, "no federation relationship")
	_, err = fx.srv.DeleteFederatedBundle(ctx, &apiv1.DeleteFederatedBundleRequest{TrustDomain: "static.test"})
	wantCode(t, err, codes.NotFound, "no bundle")
}

func TestCreateEntriesFederatesWith(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fx := newFixture(t, true)
	entry := func(fw ...string) *apiv1.Entry {
		return &apiv1.Entry{SpiffeId: "spiffe://example.org/w" + fmt.Sprint(len(fw)), ParentId: "spiffe://example.org/agent/a",
			Selectors: []*apiv1.Selector{{Type: "unix", Value: "uid:0"}}, FederatesWith: fw}
	}
	tests := []struct {
		name    string
		entry   *apiv1.Entry
		wantErr string
	}{
		{name: "other trust domains", entry: entry("spiffe://web.test", "static.test")},
		{name: "own trust domain", entry: entry("spiffe://example.org"), wantErr: "own trust domain"},
		{name: "bad trust domain", entry: entry("not a trust domain", "x", "y"), wantErr: "federates with"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := fx.srv.CreateEntries(ctx, &apiv1.CreateEntriesRequest{Entries: []*apiv1.Entry{tt.entry}})
			if err != nil {
				t.Fatal(err)
			}
			r := resp.GetResults()[0]
			if tt.wantErr == "" {
				if r.GetError() != "" || fmt.Sprint(r.GetEntry().GetFederatesWith()) != "[spiffe://web.test spiffe://static.test]" {
					t.Fatalf("result %v", r)
				}
				return
			}
			if !strings.Contains(r.GetError(), tt.wantErr) {
				t.Fatalf("error %q, want %q", r.GetError(), tt.wantErr)
			}
		})
	}
}

// TestDeleteFederatedBundleModes: SPIRE's bundle delete modes for entries
// that federate with the trust domain. restrict refuses and changes
// nothing; dissociate removes the trust domain from them and keeps them;
// delete deletes them; an entry federating elsewhere is never touched.
func TestDeleteFederatedBundleModes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tt := range []struct {
		mode        string
		wantCode    codes.Code
		wantErr     string
		wantChanged int32
		wantEntries int // entries left
		wantFedWith int // entries still federating with static.test
	}{
		{mode: "", wantCode: codes.FailedPrecondition, wantErr: "2 registration entries federate with it", wantEntries: 3, wantFedWith: 2},
		{mode: "restrict", wantCode: codes.FailedPrecondition, wantErr: "-mode dissociate", wantEntries: 3, wantFedWith: 2},
		{mode: "dissociate", wantChanged: 2, wantEntries: 3},
		{mode: "delete", wantChanged: 2, wantEntries: 1},
		{mode: "cascade", wantCode: codes.InvalidArgument, wantErr: `unknown delete mode "cascade"`, wantEntries: 3, wantFedWith: 2},
	} {
		t.Run("mode "+tt.mode, func(t *testing.T) {
			t.Parallel()
			fx := newFixture(t, true)
			if _, err := fx.srv.SetFederatedBundle(ctx, &apiv1.SetFederatedBundleRequest{Bundle: &apiv1.BundleDocument{
				TrustDomain: "static.test", Document: document(t, "static.test", 1, newCA(t, "spiffe://static.test"))}}); err != nil {
				t.Fatal(err)
			}
			mk := func(path string, fed ...string) *apiv1.Entry {
				return &apiv1.Entry{SpiffeId: "spiffe://example.org/" + path, ParentId: "spiffe://example.org/agent/x",
					Selectors: []*apiv1.Selector{{Type: "unix", Value: "uid:1"}}, FederatesWith: fed}
			}
			resp, err := fx.srv.CreateEntries(ctx, &apiv1.CreateEntriesRequest{Entries: []*apiv1.Entry{
				mk("a", "spiffe://static.test"), mk("b", "spiffe://static.test", "spiffe://web.test"), mk("c", "spiffe://web.test")}})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range resp.GetResults() {
				if r.GetError() != "" {
					t.Fatal(r.GetError())
				}
			}
			del, err := fx.srv.DeleteFederatedBundle(ctx, &apiv1.DeleteFederatedBundleRequest{TrustDomain: "static.test", Mode: tt.mode})
			rec := fx.audit.find("bundle_delete")
			if tt.wantErr != "" {
				wantCode(t, err, tt.wantCode, tt.wantErr)
				if rec["result"] != "rejected" {
					t.Fatalf("refusal not audited: %v", rec)
				}
				if _, err := fx.srv.ListFederatedBundles(ctx, &apiv1.ListFederatedBundlesRequest{TrustDomain: "static.test"}); err != nil {
					t.Fatalf("refused delete removed the bundle: %v", err)
				}
			} else if err != nil || del.GetEntriesChanged() != tt.wantChanged || rec["mode"] != tt.mode || rec["entries_changed"] != int(tt.wantChanged) {
				t.Fatalf("delete: %v, %v; audit %v", err, del, rec)
			}
			list, err := fx.srv.ListEntries(ctx, &apiv1.ListEntriesRequest{})
			if err != nil {
				t.Fatal(err)
			}
			fedWith, webKept := 0, 0
			for _, e := range list.GetEntries() {
				for _, td := range e.GetFederatesWith() {
					switch td {
					case "spiffe://static.test", "static.test":
						fedWith++
					case "spiffe://web.test", "web.test":
						webKept++
					}
				}
			}
			if len(list.GetEntries()) != tt.wantEntries || fedWith != tt.wantFedWith {
				t.Fatalf("entries %d (want %d), federating with static.test %d (want %d): %v",
					len(list.GetEntries()), tt.wantEntries, fedWith, tt.wantFedWith, list.GetEntries())
			}
			if tt.mode != "delete" && webKept != 2 || tt.mode == "delete" && webKept != 1 {
				t.Fatalf("entries federating with web.test changed: %d left", webKept)
			}
		})
	}
}
