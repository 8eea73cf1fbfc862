package federation_test

import (
	"context"
	"testing"

	"github.com/hallmarkid/hallmark/server/federation"
)

// A record stored before relationships had an owner loads as the CLI's
// (Owner ""); one written by the registrar keeps its owner, and both
// survive a restart.
func TestDynamicOwner(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := openStore(t)
	old := `{"relationships":[{"trust_domain":"old.test","bundle_endpoint_url":"https://old.test/b","bundle_endpoint_profile":"https_web"}]}`
	if err := store.PutKV(ctx, federation.DynamicKey, []byte(old)); err != nil {
		t.Fatal(err)
	}
	cfg := federation.FetcherConfig{TrustDomain: td("hub.test"), Store: store}
	f, err := federation.NewFetcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	reg := federation.Relationship{TrustDomain: td("k8s.test"), URL: "https://k8s.test/b", Profile: federation.ProfileHTTPSWeb,
		Owner: federation.OwnerK8sRegistrar}
	if _, err := f.CreateRelationship(ctx, reg, nil); err != nil {
		t.Fatal(err)
	}
	f2, err := federation.NewFetcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rels, err := f2.DynamicRelationships(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range rels {
		got[r.TrustDomain.Name()] = r.Owner
	}
	if len(got) != 2 || got["old.test"] != "" || got["k8s.test"] != federation.OwnerK8sRegistrar {
		t.Fatalf("owners = %v", got)
	}
}
