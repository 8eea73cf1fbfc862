package federation_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/hallmarkid/hallmark/server/datastore/sqlite"
	"github.com/hallmarkid/hallmark/server/federation"
)

// Two trust domains on loopback, a.test (https_spiffe) and b.test
// (https_web), fetched by hub.test: first fetch, sequence increases,
// unchanged refreshes.
func TestFetcherTwoTrustDomains(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	caA, caB, webCA := newCA(t, "a.test"), newCA(t, "b.test"), newCA(t, "web.test")
	srcA, srcB := &source{}, &source{}
	srcA.set(1, caA.cert)
	srcB.set(40, caB.cert)
	urlA, svidA := spiffeEndpointSVID(t, caA, srcA, 0)

	dir := t.TempDir()
	certPath, keyPath := writePair(t, dir, webCA.web(t))
	eB, err := federation.NewEndpoint(federation.EndpointConfig{
		TrustDomain: caB.td, Profile: federation.ProfileHTTPSWeb, CertFile: certPath, KeyFile: keyPath, Bundle: srcB.get,
	})
	if err != nil {
		t.Fatal(err)
	}
	urlB := serveEndpoint(t, eB)

	var mu sync.Mutex
	refreshed := map[string]int{}
	f, err := federation.NewFetcher(federation.FetcherConfig{
		TrustDomain: td("hub.test"), WebRoots: webCA.pool(),
		OnRefresh: func(d spiffeid.TrustDomain, at time.Time, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err == nil && !at.IsZero() {
				refreshed[d.Name()]++
			}
		},
		Relationships: []federation.Relationship{
			{TrustDomain: caA.td, URL: urlA, Profile: federation.ProfileHTTPSSPIFFE,
				EndpointID: id("spiffe://a.test/hallmark/server"), TrustBundle: caA.spiffeBundle(0)},
			{TrustDomain: caB.td, URL: urlB, Profile: federation.ProfileHTTPSWeb},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Bundles(); len(got) != 1 || got[caA.td] == nil {
		t.Fatalf("before any fetch: want only the bootstrap bundle of a.test, got %v", got)
	}

	changed := f.Changed()
	for _, d := range []spiffeid.TrustDomain{caA.td, caB.td} {
		if err := f.Refresh(ctx, d); err != nil {
			t.Fatalf("refresh %s: %v", d, err)
		}
	}
	assertClosed(t, changed, "after b.test's first bundle")
	mu.Lock()
	if refreshed["a.test"] != 1 || refreshed["b.test"] != 1 {
		t.Errorf("OnRefresh successes %v, want one per trust domain", refreshed)
	}
	mu.Unlock()
	got := f.Bundles()
	if len(got) != 2 || !hasAuthority(got[caA.td], caA.cert) || !hasAuthority(got[caB.td], caB.cert) {
		t.Fatalf("bundles %v", got)
	}
	if seq, _ := got[caB.td].SequenceNumber(); seq != 40 {
		t.Errorf("b.test sequence %d, want 40", seq)
	}

	// a.test rotates: the new authority is published with a higher sequence.
	nextA := newCA(t, "a.test")
	srcA.set(2, caA.cert, nextA.cert)
	changed = f.Changed()
	if err := f.Refresh(ctx, caA.td); err != nil {
		t.Fatal(err)
	}
	assertClosed(t, changed, "after a.test's rotation")
	if b := f.Bundles()[caA.td]; !hasAuthority(b, nextA.cert) || !hasAuthority(b, caA.cert) {
		t.Fatal("rotation not accepted")
	}
	// ... moves its endpoint to an SVID of the new authority, which
	// verifies against the bundle just accepted, and drops the old one.
	svidA.Store(nextA.svid(t, "spiffe://a.test/hallmark/server"))
	srcA.set(3, nextA.cert)
	if err := f.Refresh(ctx, caA.td); err != nil {
		t.Fatal(err)
	}
	if b := f.Bundles()[caA.td]; hasAuthority(b, caA.cert) || !hasAuthority(b, nextA.cert) {
		t.Fatal("pruning not accepted")
	}

	// Nothing new: no change signal.
	changed = f.Changed()
	for _, d := range []spiffeid.TrustDomain{caA.td, caB.td} {
		if err := f.Refresh(ctx, d); err != nil {
			t.Fatalf("refresh %s: %v", d, err)
		}
	}
	select {
	case <-changed:
		t.Fatal("Changed closed without a change")
	default:
	}
	for _, st := range f.Status() {
		if st.LastError != "" || st.LastSuccess.IsZero() || !st.HasBundle || st.Revoked {
			t.Errorf("status %+v", st)
		}
	}
}

// Every federation line of THREATS.md: the bad bundle is rejected with a
// reason, and the previously accepted bundle stays, in memory and stored.
func TestFetcherRejects(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ca := newCA(t, "a.test")
	serverID := "spiffe://a.test/hallmark/server"
	good := ca.svid(t, serverID)
	webCA := newCA(t, "web.test")
	web := webCA.web(t)
	bundleJSON := func(seq uint64, cas ...*testCA) string {
		b := spiffebundle.New(ca.td)
		for _, c := range cas {
			b.AddX509Authority(c.cert)
		}
		b.SetSequenceNumber(seq)
		data, err := federation.MarshalBundle(b)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	body := func(s string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, s) }
	}
	big := `{"keys":[],"pad":"` + strings.Repeat("x", federation.MaxBundleSize) + `"}`

	tests := []struct {
		name    string
		profile federation.Profile // default https_spiffe with endpoint ID serverID
		cert    *tls.Certificate
		handler http.HandlerFunc
		wantErr string
	}{
		{name: "wrong trust domain in the served bundle", profile: federation.ProfileHTTPSWeb, cert: web,
			handler: body(bundleJSON(11, newCA(t, "a.test", "spiffe://evil.test"))), wantErr: `names "spiffe://evil.test"`},
		{name: "https_spiffe with a wrong SPIFFE ID", cert: ca.svid(t, "spiffe://a.test/workload"),
			handler: body(bundleJSON(11, ca)), wantErr: `endpoint SVID is "spiffe://a.test/workload", want "spiffe://a.test/hallmark/server"`},
		{name: "https_spiffe with an SVID of another trust domain", cert: newCA(t, "b.test").svid(t, "spiffe://b.test/hallmark/server"),
			handler: body(bundleJSON(11, ca)), wantErr: `in trust domain "b.test", want "a.test"`},
		{name: "https_spiffe with an SVID from an untrusted CA", cert: newCA(t, "a.test").svid(t, serverID),
			handler: body(bundleJSON(11, ca)), wantErr: "does not verify against the current bundle"},
		{name: "https_spiffe with a web certificate", cert: web,
			handler: body(bundleJSON(11, ca)), wantErr: "not an X509-SVID"},
		{name: "https_web with an untrusted certificate", profile: federation.ProfileHTTPSWeb, cert: newCA(t, "web.test").web(t),
			handler: body(bundleJSON(11, ca)), wantErr: "certificate signed by unknown authority"},
		{name: "rolled-back sequence", handler: body(bundleJSON(9, ca)), wantErr: "spiffe_sequence rolled back from 10 to 9"},
		{name: "sequence missing", handler: body(`{"keys":[]}`), wantErr: "no spiffe_sequence"},
		{name: "other keys under the same sequence", handler: body(bundleJSON(10, ca, newCA(t, "a.test"))), wantErr: "stayed 10"},
		{name: "oversized body with Content-Length", handler: body(big), wantErr: "larger than the limit"},
		{name: "oversized body, chunked", handler: func(w http.ResponseWriter, _ *http.Request) {
			for i := 0; i < 5; i++ {
				fmt.Fprint(w, strings.Repeat(" ", federation.MaxBundleSize/4))
				w.(http.Flusher).Flush()
			}
		}, wantErr: "larger than the limit"},
		{name: "malformed JSON", handler: body(`{"keys":[`), wantErr: "parse bundle"},
		{name: "not an object", handler: body(`[]`), wantErr: "parse bundle"},
		{name: "keys missing", handler: body(`{"spiffe_sequence":12}`), wantErr: `"keys" must be an array`},
		{name: "keys null", handler: body(`{"keys":null,"spiffe_sequence":12}`), wantErr: `"keys" must be an array`},
		{name: "x509-svid key with two certificates", handler: body(strings.Replace(bundleJSON(12, ca), `"x5c":["`,
			`"x5c":["`+b64(ca.cert)+`","`, 1)), wantErr: "expected a single certificate"},
		{name: "non-200", handler: func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, bundleJSON(12, ca), http.StatusInternalServerError)
		}, wantErr: "want 200"},
		{name: "redirect elsewhere is not followed", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://127.0.0.2:1/", http.StatusFound)
		}, wantErr: `"302 Found", want 200`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cert := tt.cert
			if cert == nil {
				cert = good
			}
			u := rawServer(t, cert, tt.handler)
			rel := federation.Relationship{TrustDomain: ca.td, URL: u, Profile: federation.ProfileHTTPSSPIFFE,
				EndpointID: id(serverID)}
			if tt.profile != "" {
				rel.Profile, rel.EndpointID = tt.profile, spiffeid.ID{}
			}
			store := openStore(t)
			prev := ca.spiffeBundle(10)
			data, _ := federation.MarshalBundle(prev)
			if err := store.PutKV(ctx, federation.KVPrefix+"a.test", data); err != nil {
				t.Fatal(err)
			}
			var failed error
			f, err := federation.NewFetcher(federation.FetcherConfig{
				TrustDomain: td("hub.test"), Relationships: []federation.Relationship{rel}, Store: store, WebRoots: webCA.pool(),
				OnRefresh: func(_ spiffeid.TrustDomain, _ time.Time, err error) { failed = err },
			})
			if err != nil {
				t.Fatal(err)
			}
			changed := f.Changed()
			err = f.Refresh(ctx, ca.td)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			select {
			case <-changed:
				t.Error("Changed closed by a rejected bundle")
			default:
			}
			if b := f.Bundles()[ca.td]; !b.Equal(prev) {
				t.Error("the accepted bundle changed")
			}
			stored, err := store.GetKV(ctx, federation.KVPrefix+"a.test")
			if err != nil || string(stored) != string(data) {
				t.Errorf("stored bundle changed: %s, %v", stored, err)
			}
			if st := f.Status()[0]; !strings.Contains(st.LastError, tt.wantErr) {
				t.Errorf("status error %q", st.LastError)
			}
			if failed == nil || !strings.Contains(failed.Error(), tt.wantErr) {
				t.Errorf("OnRefresh told %v", failed)
			}
		})
	}
}

// Empty keys revoke: the bundle becomes empty, foreign SVIDs stop
// verifying, and https_spiffe cannot authenticate the endpoint any more
// until the operator sets a bundle again.
func TestFetcherRevocation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ca := newCA(t, "a.test")
	src := &source{}
	src.set(5, ca.cert)
	u := spiffeEndpoint(t, ca, src, 0)
	store := openStore(t)
	f, err := federation.NewFetcher(federation.FetcherConfig{
		TrustDomain: td("hub.test"), Store: store,
		Relationships: []federation.Relationship{{TrustDomain: ca.td, URL: u, Profile: federation.ProfileHTTPSSPIFFE,
			EndpointID: id("spiffe://a.test/hallmark/server"), TrustBundle: ca.spiffeBundle(1)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Refresh(ctx, ca.td); err != nil {
		t.Fatal(err)
	}
	workload := ca.svid(t, "spiffe://a.test/workload")
	if _, _, err := x509svid.Verify([]*x509.Certificate{workload.Leaf}, bundleSet(f)); err != nil {
		t.Fatalf("foreign SVID before revocation: %v", err)
	}

	// The endpoint publishes an empty bundle (our Endpoint refuses to, so
	// serve the document directly).
	revoked := rawServer(t, ca.svid(t, "spiffe://a.test/hallmark/server"), func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"keys":[],"spiffe_sequence":6}`)
	})
	f2, err := federation.NewFetcher(federation.FetcherConfig{
		TrustDomain: td("hub.test"), Store: store,
		Relationships: []federation.Relationship{{TrustDomain: ca.td, URL: revoked, Profile: federation.ProfileHTTPSSPIFFE,
			EndpointID: id("spiffe://a.test/hallmark/server"), TrustBundle: ca.spiffeBundle(1)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	changed := f2.Changed()
	if err := f2.Refresh(ctx, ca.td); err != nil {
		t.Fatal(err)
	}
	assertClosed(t, changed, "after revocation")
	b := f2.Bundles()[ca.td]
	if b == nil || !b.Empty() {
		t.Fatalf("bundle after revocation: %v", b)
	}
	if st := f2.Status()[0]; !st.Revoked || st.Sequence != 6 {
		t.Errorf("status %+v", st)
	}
	if _, _, err := x509svid.Verify([]*x509.Certificate{workload.Leaf}, bundleSet(f2)); err == nil {
		t.Fatal("a foreign SVID still verifies after revocation")
	}
	if err := f2.Refresh(ctx, ca.td); err == nil || !strings.Contains(err.Error(), "revoked or never bootstrapped") {
		t.Fatalf("refresh after revocation: %v", err)
	}

	// Revocation survives a restart: the stored empty bundle wins over the
	// bootstrap bundle.
	f3, err := federation.NewFetcher(federation.FetcherConfig{
		TrustDomain: td("hub.test"), Store: store,
		Relationships: []federation.Relationship{{TrustDomain: ca.td, URL: u, Profile: federation.ProfileHTTPSSPIFFE,
			EndpointID: id("spiffe://a.test/hallmark/server"), TrustBundle: ca.spiffeBundle(1)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if b := f3.Bundles()[ca.td]; b == nil || !b.Empty() {
		t.Fatal("revocation lost on restart")
	}
	// The operator bootstraps again.
	if err := f3.SetBundle(ctx, ca.spiffeBundle(1)); err != nil {
		t.Fatal(err)
	}
	if err := f3.Refresh(ctx, ca.td); err != nil {
		t.Fatalf("refresh after SetBundle: %v", err)
	}
	if b := f3.Bundles()[ca.td]; !hasAuthority(b, ca.cert) {
		t.Fatal("not trusted again after SetBundle")
	}
}

func TestFetcherRefreshHintClamp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ca := newCA(t, "a.test")
	cert := ca.svid(t, "spiffe://a.test/hallmark/server")
	tests := []struct {
		name       string
		hint       string // spiffe_refresh_hint member, or empty for none
		min, max   time.Duration
		wantPeriod time.Duration
	}{
		{name: "within bounds", hint: `"spiffe_refresh_hint":3600,`, wantPeriod: time.Hour},
		{name: "below the minimum", hint: `"spiffe_refresh_hint":1,`, wantPeriod: time.Minute},
		{name: "zero", hint: `"spiffe_refresh_hint":0,`, wantPeriod: time.Minute},
		{name: "negative", hint: `"spiffe_refresh_hint":-50,`, wantPeriod: time.Minute},
		{name: "above the maximum", hint: `"spiffe_refresh_hint":864000,`, wantPeriod: 24 * time.Hour},
		{name: "overflowing", hint: `"spiffe_refresh_hint":9223372036854775807,`, wantPeriod: 24 * time.Hour},
		{name: "absent", wantPeriod: 5 * time.Minute},
		{name: "injected bounds, below", hint: `"spiffe_refresh_hint":1,`, min: 10 * time.Millisecond, max: time.Second,
			wantPeriod: time.Second},
		{name: "injected bounds, above", hint: `"spiffe_refresh_hint":7200,`, min: 10 * time.Millisecond, max: 2 * time.Second,
			wantPeriod: 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data, err := federation.MarshalBundle(ca.spiffeBundle(2))
			if err != nil {
				t.Fatal(err)
			}
			doc := strings.Replace(string(data), `{"keys":`, `{`+tt.hint+`"keys":`, 1)
			u := rawServer(t, cert, func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, doc) })
			f, err := federation.NewFetcher(federation.FetcherConfig{
				TrustDomain: td("hub.test"), MinRefresh: tt.min, MaxRefresh: tt.max,
				Relationships: []federation.Relationship{{TrustDomain: ca.td, URL: u, Profile: federation.ProfileHTTPSSPIFFE,
					EndpointID: id("spiffe://a.test/hallmark/server"), TrustBundle: ca.spiffeBundle(1)}},
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Refresh(ctx, ca.td); err != nil {
				t.Fatal(err)
			}
			if got := f.Status()[0].RefreshInterval; got != tt.wantPeriod {
				t.Errorf("refresh interval %v, want %v", got, tt.wantPeriod)
			}
		})
	}
}

// Run refreshes on its own at the clamped hint, and retries a failing
// endpoint with backoff until it recovers.
func TestFetcherRun(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "a.test")
	src := &source{} // empty: the endpoint answers 503 at first
	u := spiffeEndpoint(t, ca, src, time.Second)
	f, err := federation.NewFetcher(federation.FetcherConfig{
		TrustDomain: td("hub.test"), MinRefresh: 10 * time.Millisecond, MaxRefresh: 20 * time.Millisecond,
		RetryMin: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond,
		Relationships: []federation.Relationship{{TrustDomain: ca.td, URL: u, Profile: federation.ProfileHTTPSSPIFFE,
			EndpointID: id("spiffe://a.test/hallmark/server"), TrustBundle: ca.spiffeBundle(0)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	waitFor(t, func() bool { return strings.Contains(f.Status()[0].LastError, "503") })

	next := newCA(t, "a.test")
	src.set(1, ca.cert, next.cert)
	waitFor(t, func() bool { return hasAuthority(f.Bundles()[ca.td], next.cert) })
	last := newCA(t, "a.test")
	src.set(2, ca.cert, last.cert)
	waitFor(t, func() bool { return hasAuthority(f.Bundles()[ca.td], last.cert) })
	if st := f.Status()[0]; st.RefreshInterval != 20*time.Millisecond || st.NextRefresh.IsZero() {
		t.Errorf("status %+v", st)
	}
}

// An accepted bundle survives a restart; a https_web relationship needs no
// bootstrap bundle.
func TestFetcherPersistence(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ca, webCA := newCA(t, "b.test"), newCA(t, "web.test")
	src := &source{}
	src.set(3, ca.cert)
	dir := t.TempDir()
	certPath, keyPath := writePair(t, dir, webCA.web(t))
	e, err := federation.NewEndpoint(federation.EndpointConfig{Profile: federation.ProfileHTTPSWeb,
		CertFile: certPath, KeyFile: keyPath, Bundle: src.get})
	if err != nil {
		t.Fatal(err)
	}
	u := serveEndpoint(t, e)
	store := openStore(t)
	cfg := federation.FetcherConfig{TrustDomain: td("hub.test"), Store: store, WebRoots: webCA.pool(),
		Relationships: []federation.Relationship{{TrustDomain: ca.td, URL: u, Profile: federation.ProfileHTTPSWeb}}}
	f, err := federation.NewFetcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Refresh(ctx, ca.td); err != nil {
		t.Fatal(err)
	}
	f2, err := federation.NewFetcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b := f2.Bundles()[ca.td]
	if !hasAuthority(b, ca.cert) {
		t.Fatal("bundle lost across restart")
	}
	if seq, _ := b.SequenceNumber(); seq != 3 {
		t.Errorf("stored sequence %d", seq)
	}
	// The restored sequence still guards against rollback.
	src.set(2, ca.cert)
	if err := f2.Refresh(ctx, ca.td); err == nil || !strings.Contains(err.Error(), "rolled back") {
		t.Fatalf("rollback after restart: %v", err)
	}
}

// Foreign bundles are never merged into ours: our own trust domain cannot
// be federated with, and our endpoint serves only our authorities.
func TestForeignBundlesStayApart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	own, foreign := newCA(t, "hub.test"), newCA(t, "a.test")
	srcF := &source{}
	srcF.set(1, foreign.cert)
	uF := spiffeEndpoint(t, foreign, srcF, 0)
	srcOwn := &source{}
	srcOwn.set(1, own.cert)
	e, err := federation.NewEndpoint(federation.EndpointConfig{Profile: federation.ProfileHTTPSSPIFFE,
		GetCertificate: func() (*tls.Certificate, error) { return nil, nil }, Bundle: srcOwn.get})
	if err != nil {
		t.Fatal(err)
	}

	_, err = federation.NewFetcher(federation.FetcherConfig{TrustDomain: own.td,
		Relationships: []federation.Relationship{{TrustDomain: own.td, URL: "https://127.0.0.1:1/", Profile: federation.ProfileHTTPSWeb}}})
	if err == nil || !strings.Contains(err.Error(), "own trust domain") {
		t.Fatalf("federating with ourselves: %v", err)
	}
	f, err := federation.NewFetcher(federation.FetcherConfig{TrustDomain: own.td,
		Relationships: []federation.Relationship{{TrustDomain: foreign.td, URL: uF, Profile: federation.ProfileHTTPSSPIFFE,
			EndpointID: id("spiffe://a.test/hallmark/server"), TrustBundle: foreign.spiffeBundle(0)}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Refresh(ctx, foreign.td); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.Bundles()[own.td]; ok {
		t.Fatal("own trust domain among federated bundles")
	}
	served := fetchDoc(t, e)
	b, err := federation.ParseBundle(own.td, served)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.X509Authorities(); len(got) != 1 || !got[0].Equal(own.cert) {
		t.Fatalf("our endpoint serves %d authorities", len(got))
	}
}

func TestNewFetcherErrors(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "a.test")
	dir := t.TempDir()
	spiffeRel := func(mod func(*federation.Relationship)) federation.Relationship {
		r := federation.Relationship{TrustDomain: ca.td, URL: "https://127.0.0.1:1/", Profile: federation.ProfileHTTPSSPIFFE,
			EndpointID: id("spiffe://a.test/hallmark/server"), TrustBundle: ca.spiffeBundle(0)}
		if mod != nil {
			mod(&r)
		}
		return r
	}
	tests := []struct {
		name    string
		rels    []federation.Relationship
		min     time.Duration
		wantErr string
	}{
		{name: "http URL", rels: []federation.Relationship{spiffeRel(func(r *federation.Relationship) { r.URL = "http://127.0.0.1/" })},
			wantErr: "not an https:// URL"},
		{name: "user info", rels: []federation.Relationship{spiffeRel(func(r *federation.Relationship) { r.URL = "https://u:p@127.0.0.1/" })},
			wantErr: "user info"},
		{name: "no endpoint ID", rels: []federation.Relationship{spiffeRel(func(r *federation.Relationship) { r.EndpointID = spiffeid.ID{} })},
			wantErr: "needs the endpoint's SPIFFE ID"},
		{name: "endpoint ID of another trust domain", rels: []federation.Relationship{spiffeRel(func(r *federation.Relationship) {
			r.EndpointID = id("spiffe://b.test/hallmark/server")
		})}, wantErr: `not in trust domain "a.test"`},
		{name: "no trust bundle", rels: []federation.Relationship{spiffeRel(func(r *federation.Relationship) { r.TrustBundle = nil })},
			wantErr: "needs a trust bundle"},
		{name: "trust bundle file missing", rels: []federation.Relationship{spiffeRel(func(r *federation.Relationship) {
			r.TrustBundle, r.TrustBundlePath = nil, filepath.Join(dir, "missing.json")
		})}, wantErr: "no such file"},
		{name: "trust bundle of another trust domain", rels: []federation.Relationship{spiffeRel(func(r *federation.Relationship) {
			r.TrustBundle = newCA(t, "b.test").spiffeBundle(0)
		})}, wantErr: `the trust bundle is for "b.test"`},
		{name: "unknown profile", rels: []federation.Relationship{spiffeRel(func(r *federation.Relationship) { r.Profile = "http" })},
			wantErr: `profile "http"`},
		{name: "twice", rels: []federation.Relationship{spiffeRel(nil), spiffeRel(nil)}, wantErr: "configured twice"},
		{name: "min above max", min: 48 * time.Hour, wantErr: "above the maximum"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := federation.NewFetcher(federation.FetcherConfig{TrustDomain: td("hub.test"), Relationships: tt.rels, MinRefresh: tt.min})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func openStore(t testing.TB) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ds.sqlite3"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
