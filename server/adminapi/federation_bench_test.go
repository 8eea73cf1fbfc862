package adminapi_test

import (
	"context"
	"fmt"
	"testing"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
)

// BenchmarkSetFederatedBundle measures `bundle set` of a static bundle:
// parse, check, persist to SQLite (bundle and index), notify.
func BenchmarkSetFederatedBundle(b *testing.B) {
	fx := newFixture(b, true)
	ctx := context.Background()
	docs := [][]byte{document(b, "static.test", 1, newCA(b, "spiffe://static.test")), document(b, "static.test", 2, newCA(b, "spiffe://static.test"))}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := fx.srv.SetFederatedBundle(ctx, &apiv1.SetFederatedBundleRequest{
			Bundle: &apiv1.BundleDocument{TrustDomain: "static.test", Document: docs[i%2]}}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkListFederatedBundles lists 100 static bundles (the https_web
// relationship of the fixture has none yet).
func BenchmarkListFederatedBundles(b *testing.B) {
	fx := newFixture(b, true)
	ctx := context.Background()
	for i := range 100 {
		td := fmt.Sprintf("td%d.test", i)
		if _, err := fx.srv.SetFederatedBundle(ctx, &apiv1.SetFederatedBundleRequest{
			Bundle: &apiv1.BundleDocument{TrustDomain: td, Document: document(b, td, 1, newCA(b, "spiffe://"+td))}}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := fx.srv.ListFederatedBundles(ctx, &apiv1.ListFederatedBundlesRequest{})
		if err != nil || len(resp.GetBundles()) != 100 {
			b.Fatal(err, len(resp.GetBundles()))
		}
	}
}
