package federation_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/server/datastore"
	"github.com/hallmarkid/hallmark/server/federation"
)

// statusOf returns the status of td, if f has one.
func statusOf(f *federation.Fetcher, name string) (federation.Status, bool) {
	for _, st := range f.Status() {
		if st.TrustDomain == td(name) {
			return st, true
		}
	}
	return federation.Status{}, false
}

func runFetcher(t *testing.T, f *federation.Fetcher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = f.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
}

// TestDynamicRelationships: relationships created, updated and deleted at
// run time (SPIRE's federation create|update|delete) are fetched at once,
// stored, seen by a second server on the same datastore within its reload
// interval and by a restarted one; the configuration's relationships are
// read-only and win over a stored one of the same trust domain.
func TestDynamicRelationships(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := openStore(t)
	a := newCA(t, "a.test")
	srcA := &source{}
	srcA.set(5, a.cert)
	urlA := spiffeEndpoint(t, a, srcA, 0)
	endpointA := id("spiffe://a.test/hallmark/server")
	conf := newCA(t, "conf.test")
	confRel := federation.Relationship{TrustDomain: conf.td, URL: "https://conf.test/bundle", Profile: federation.ProfileHTTPSWeb}
	cfg := federation.FetcherConfig{TrustDomain: td("hub.test"), Store: store, StaticReload: 20 * time.Millisecond,
		Relationships: []federation.Relationship{confRel}}
	f1, err := federation.NewFetcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runFetcher(t, f1)
	relA := federation.Relationship{TrustDomain: a.td, URL: urlA, Profile: federation.ProfileHTTPSSPIFFE, EndpointID: endpointA}

	// https_spiffe needs a bundle to authenticate the endpoint with.
	if _, err := f1.CreateRelationship(ctx, relA, nil); err == nil || !contains(err, "needs the bundle") {
		t.Fatalf("https_spiffe without a bundle: %v", err)
	}
	// As with SPIRE: bundle set first, then federation create.
	if err := f1.SetBundle(ctx, a.spiffeBundle(1)); err != nil {
		t.Fatal(err)
	}
	st, err := f1.CreateRelationship(ctx, relA, nil)
	if err != nil || !st.Dynamic || st.EndpointID != endpointA || st.Static {
		t.Fatalf("create: %+v, %v", st, err)
	}
	waitFor(t, func() bool { st, _ := statusOf(f1, "a.test"); return st.Sequence == 5 && st.LastError == "" })
	if st, _ := statusOf(f1, "a.test"); st.Static {
		t.Fatal("the static bundle is still listed beside the relationship that took it over")
	}

	for _, tt := range []struct {
		name string
		err  error
		want error
	}{
		{"create again", second(f1.CreateRelationship(ctx, relA, nil)), federation.ErrExists},
		{"create a configured one", second(f1.CreateRelationship(ctx, confRel, nil)), federation.ErrConfigured},
		{"update a configured one", second(f1.UpdateRelationship(ctx, confRel, nil)), federation.ErrConfigured},
		{"delete a configured one", f1.DeleteRelationship(ctx, conf.td), federation.ErrConfigured},
		{"update an unknown one", second(f1.UpdateRelationship(ctx, federation.Relationship{TrustDomain: td("nobody.test"),
			URL: "https://nobody.test", Profile: federation.ProfileHTTPSWeb}, nil)), federation.ErrUnknownTrustDomain},
		{"delete an unknown one", f1.DeleteRelationship(ctx, td("nobody.test")), federation.ErrUnknownTrustDomain},
	} {
		if !errors.Is(tt.err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, tt.err, tt.want)
		}
	}
	if _, err := f1.CreateRelationship(ctx, federation.Relationship{TrustDomain: td("hub.test"), URL: "https://x", Profile: federation.ProfileHTTPSWeb}, nil); err == nil {
		t.Error("created a relationship with our own trust domain")
	}
	if _, err := f1.CreateRelationship(ctx, federation.Relationship{TrustDomain: td("b.test"), URL: "http://b.test", Profile: federation.ProfileHTTPSWeb}, nil); err == nil {
		t.Error("created a relationship with an http:// endpoint")
	}
	if _, err := f1.CreateRelationship(ctx, federation.Relationship{TrustDomain: td("b.test"), URL: "https://b.test",
		Profile: federation.ProfileHTTPSWeb}, a.spiffeBundle(1)); err == nil || !contains(err, `bundle is for "a.test"`) {
		t.Errorf("bundle of another trust domain: %v", err)
	}

	// A second server on the same datastore loads it, with its bundle.
	f2, err := federation.NewFetcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := statusOf(f2, "a.test"); !ok || !st.Dynamic || st.Sequence != 5 {
		t.Fatalf("second server: %+v %v", st, ok)
	}
	runFetcher(t, f2)

	// Created, updated and deleted on the first, seen on the second.
	b := newCA(t, "b.test")
	relB := federation.Relationship{TrustDomain: b.td, URL: "https://b.test/bundle", Profile: federation.ProfileHTTPSWeb}
	if _, err := f1.CreateRelationship(ctx, relB, b.spiffeBundle(3)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		st, ok := statusOf(f2, "b.test")
		return ok && st.Dynamic && hasAuthority(f2.Bundles()[b.td], b.cert)
	})
	relB.URL = "https://b.test/v2/bundle"
	if st, err := f1.UpdateRelationship(ctx, relB, nil); err != nil || st.URL != relB.URL || st.X509Authorities != 1 {
		t.Fatalf("update: %+v, %v", st, err)
	}
	waitFor(t, func() bool { st, _ := statusOf(f2, "b.test"); return st.URL == relB.URL })
	if !hasAuthority(f2.Bundles()[b.td], b.cert) || !hasAuthority(f1.Bundles()[b.td], b.cert) {
		t.Fatal("update without a bundle lost the bundle held")
	}
	changed := f1.Changed()
	if err := f1.DeleteRelationship(ctx, b.td); err != nil {
		t.Fatal(err)
	}
	assertClosed(t, changed, "after delete")
	if _, ok := f1.Bundles()[b.td]; ok {
		t.Fatal("deleted relationship's bundle still trusted")
	}
	waitFor(t, func() bool { _, ok := statusOf(f2, "b.test"); return !ok })
	if _, ok := f2.Bundles()[b.td]; ok {
		t.Fatal("second server still trusts the deleted relationship's bundle")
	}
	if err := f1.Refresh(ctx, b.td); !errors.Is(err, federation.ErrUnknownTrustDomain) {
		t.Fatalf("refresh after delete: %v", err)
	}

	// A restart keeps a.test; the file wins over a stored relationship of
	// the same trust domain.
	cfg.Relationships = append(cfg.Relationships, federation.Relationship{TrustDomain: a.td, URL: urlA,
		Profile: federation.ProfileHTTPSSPIFFE, EndpointID: endpointA})
	f3, err := federation.NewFetcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := statusOf(f3, "a.test"); !ok || st.Dynamic || st.Sequence != 5 {
		t.Fatalf("configured a.test after restart: %+v %v", st, ok)
	}
	if err := f3.DeleteRelationship(ctx, a.td); !errors.Is(err, federation.ErrConfigured) {
		t.Fatalf("delete of a.test configured in the file: %v", err)
	}

	// Deleting forgets the bundle: creating again starts from nothing.
	if err := f1.DeleteRelationship(ctx, a.td); err != nil {
		t.Fatal(err)
	}
	if _, err := f1.CreateRelationship(ctx, relA, nil); err == nil || !contains(err, "needs the bundle") {
		t.Fatalf("create after delete reused a forgotten bundle: %v", err)
	}
	f4, err := federation.NewFetcher(federation.FetcherConfig{TrustDomain: td("hub.test"), Store: store})
	if err != nil {
		t.Fatal(err)
	}
	if len(f4.Status()) != 0 {
		t.Fatalf("after deleting every dynamic relationship a restart holds %+v", f4.Status())
	}
}

// TestDynamicRelationshipsNeedStore: without a datastore nothing can be
// created (it would not survive a restart nor reach other servers).
func TestDynamicRelationshipsNeedStore(t *testing.T) {
	t.Parallel()
	f, err := federation.NewFetcher(federation.FetcherConfig{TrustDomain: td("hub.test")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.CreateRelationship(context.Background(), federation.Relationship{TrustDomain: td("b.test"), URL: "https://b.test",
		Profile: federation.ProfileHTTPSWeb}, nil)
	if !errors.Is(err, federation.ErrNoStore) {
		t.Fatalf("create without a store: %v", err)
	}
}

func second[T any](_ T, err error) error { return err }

func contains(err error, s string) bool {
	return err != nil && strings.Contains(err.Error(), s)
}

// memKV is an in-memory KV with compare-and-swap.
type memKV struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (k *memKV) GetKV(_ context.Context, key string) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.m[key]
	if !ok {
		return nil, datastore.ErrNotFound
	}
	return append([]byte(nil), v...), nil
}

func (k *memKV) PutKV(_ context.Context, key string, value []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.m[key] = append([]byte(nil), value...)
	return nil
}

func (k *memKV) SwapKV(_ context.Context, key string, old, value []byte) (bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	cur, ok := k.m[key]
	if old == nil && ok || old != nil && (!ok || !bytes.Equal(cur, old)) {
		return false, nil
	}
	k.m[key] = append([]byte(nil), value...)
	return true, nil
}

// FuzzStoredRelationships: whatever the datastore holds under DynamicKey, a
// fetcher starts with valid relationships only, or refuses to start; it
// never panics.
func FuzzStoredRelationships(f *testing.F) {
	for _, s := range []string{
		`{"relationships":[]}`,
		`{"relationships":[{"trust_domain":"a.test","bundle_endpoint_url":"https://a.test","bundle_endpoint_profile":"https_web"}]}`,
		`{"relationships":[{"trust_domain":"a.test","bundle_endpoint_url":"https://a.test","bundle_endpoint_profile":"https_spiffe","endpoint_spiffe_id":"spiffe://a.test/s"}]}`,
		`{"relationships":[{"trust_domain":"hub.test","bundle_endpoint_url":"http://x","bundle_endpoint_profile":"ftp"}]}`,
		`{"relationships":[{"trust_domain":"A..b","endpoint_spiffe_id":"spiffe://b.test/%00"}]}`,
		`{"relationships":null}`, `[]`, `{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		kv := &memKV{m: map[string][]byte{federation.DynamicKey: data}}
		fe, err := federation.NewFetcher(federation.FetcherConfig{TrustDomain: td("hub.test"), Store: kv})
		if err != nil {
			return
		}
		for _, st := range fe.Status() {
			if !st.Dynamic || st.TrustDomain == td("hub.test") || !strings.HasPrefix(st.URL, "https://") ||
				st.Profile != federation.ProfileHTTPSWeb && st.Profile != federation.ProfileHTTPSSPIFFE {
				t.Fatalf("accepted an invalid stored relationship: %+v", st)
			}
		}
	})
}
