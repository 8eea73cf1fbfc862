package k8sregistrar_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/hallmarkid/hallmark/server/federation"
	"github.com/hallmarkid/hallmark/server/k8sregistrar"
)

// testFederator is server/registrar.go's adapter over a real (not
// running) federation.Fetcher on the env's datastore, counting writes.
type testFederator struct {
	f      *federation.Fetcher
	writes atomic.Int64
}

func (a *testFederator) List(ctx context.Context) ([]federation.Relationship, error) {
	return a.f.DynamicRelationships(ctx)
}

func (a *testFederator) Create(ctx context.Context, rel federation.Relationship, b *spiffebundle.Bundle) error {
	a.writes.Add(1)
	_, err := a.f.CreateRelationship(ctx, rel, b)
	return err
}

func (a *testFederator) Update(ctx context.Context, rel federation.Relationship, b *spiffebundle.Bundle) error {
	a.writes.Add(1)
	_, err := a.f.UpdateRelationship(ctx, rel, b)
	return err
}

func (a *testFederator) Delete(ctx context.Context, td spiffeid.TrustDomain) error {
	a.writes.Add(1)
	return a.f.DeleteRelationship(ctx, td)
}

const cftdDoc = `
apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterFederatedTrustDomain
metadata: {name: %s}
spec:
  className: fedapply
  trustDomain: %s
  bundleEndpointURL: %s
  bundleEndpointProfile: {type: https_web}
`

func (a *testFederator) rel(t *testing.T, name string) (federation.Relationship, bool) {
	t.Helper()
	rels, err := a.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rels {
		if r.TrustDomain.Name() == name {
			return r, true
		}
	}
	return federation.Relationship{}, false
}

func (e *env) ready(name string) metav1.Condition {
	var st struct {
		Conditions []metav1.Condition `json:"conditions"`
	}
	e.status(k8sregistrar.ClusterFederatedTrustDomains, name, &st)
	if len(st.Conditions) == 0 {
		return metav1.Condition{}
	}
	return st.Conditions[0]
}

// ClusterFederatedTrustDomain objects become dynamic relationships owned
// by the registrar: created, updated, deleted with the object; a
// relationship created with the CLI is never touched (the object reports
// the conflict); a restart writes nothing.
func TestFederationApplied(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	f, err := federation.NewFetcher(federation.FetcherConfig{TrustDomain: td, Store: e.store.Store.(federation.KV)})
	if err != nil {
		t.Fatal(err)
	}
	fed := &testFederator{f: f}
	cliTD := spiffeid.RequireTrustDomainFromString("cli.example")
	if _, err := f.CreateRelationship(ctx, federation.Relationship{TrustDomain: cliTD, URL: "https://cli.example/b",
		Profile: federation.ProfileHTTPSWeb}, nil); err != nil {
		t.Fatal(err)
	}
	e.apply("cftd", fmt.Sprintf(cftdDoc, "fa-web", "partner.example", "https://partner.example/v1"))
	e.apply("cftd", fmt.Sprintf(cftdDoc, "fa-cli", "cli.example", "https://elsewhere.example/b"))
	cfg := k8sregistrar.Config{Cluster: "fedapply", ClassName: "fedapply", Federator: fed}
	r1 := e.start(cfg)

	waitFor(t, 10*time.Second, "relationship created", func() bool {
		r, ok := fed.rel(t, "partner.example")
		return ok && r.URL == "https://partner.example/v1" && r.Owner == federation.OwnerK8sRegistrar
	})
	waitFor(t, 10*time.Second, "statuses", func() bool {
		return e.ready("fa-web").Reason == k8sregistrar.ReasonApplied && e.ready("fa-cli").Reason == k8sregistrar.ReasonConflict
	})
	if c := e.ready("fa-cli"); c.Status != metav1.ConditionFalse {
		t.Errorf("fa-cli condition %+v", c)
	}
	if r, _ := fed.rel(t, "cli.example"); r.URL != "https://cli.example/b" || r.Owner != "" {
		t.Fatalf("CLI relationship changed: %+v", r)
	}

	// Update the URL.
	u, err := e.dyn.Resource(k8sregistrar.ClusterFederatedTrustDomains).Get(ctx, "fa-web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(u.Object, "https://partner.example/v2", "spec", "bundleEndpointURL"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.dyn.Resource(k8sregistrar.ClusterFederatedTrustDomains).Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "relationship updated", func() bool {
		r, ok := fed.rel(t, "partner.example")
		return ok && r.URL == "https://partner.example/v2"
	})
	waitFor(t, 10*time.Second, "status of the update", func() bool {
		c := e.ready("fa-web")
		return c.Reason == k8sregistrar.ReasonApplied && c.ObservedGeneration == 2
	})
	r1.stop()

	// Restart: nothing changed, nothing written.
	before := fed.writes.Load()
	r2 := e.start(cfg)
	waitFor(t, 10*time.Second, "the restarted registrar leading", r2.Leading)
	time.Sleep(time.Second)
	if w := fed.writes.Load() - before; w != 0 {
		t.Fatalf("restart made %d federation writes, want 0", w)
	}

	// Delete both objects: the registrar's relationship goes, the CLI's stays.
	for _, n := range []string{"fa-web", "fa-cli"} {
		if err := e.dyn.Resource(k8sregistrar.ClusterFederatedTrustDomains).Delete(ctx, n, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "relationship deleted", func() bool {
		_, ok := fed.rel(t, "partner.example")
		return !ok
	})
	if r, ok := fed.rel(t, "cli.example"); !ok || r.URL != "https://cli.example/b" {
		t.Fatalf("CLI relationship touched: %+v %v", r, ok)
	}
}
