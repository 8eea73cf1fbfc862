package k8sregistrar_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/server/k8sregistrar"
)

const mesh = `
apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterSPIFFEID
metadata: {name: %s}
spec:
  className: %s
  spiffeIDTemplate: "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}/{{ .PodMeta.Name }}"
`

// A restarted registrar converges from a full list and writes nothing when
// nothing changed; what changed while it was down costs exactly those
// writes.
func TestRestartMakesNoWrites(t *testing.T) {
	e := newEnv(t)
	const cluster, class, n = "restart", "restart", 60
	e.namespace("rs-apps", nil)
	e.serviceAccount("rs-apps", "app")
	e.node("rs-node")
	e.apply("csid", fmt.Sprintf(mesh, "rs-mesh", class))
	for i := range n {
		e.pod("rs-apps", fmt.Sprintf("p%d", i), "app", "rs-node", map[string]string{"i": fmt.Sprint(i)})
	}
	prefix := k8sregistrar.OwnedPrefix(cluster)
	cfg := k8sregistrar.Config{Cluster: cluster, ClassName: class}
	r1 := e.start(cfg)
	waitFor(t, 20*time.Second, "all entries", func() bool { return len(e.entries(prefix)) == n })
	r1.stop()

	before := e.store.writes.Load()
	r2 := e.start(cfg)
	waitFor(t, 10*time.Second, "the restarted registrar leading", r2.Leading)
	time.Sleep(time.Second) // let it converge and write statuses
	if w := e.store.writes.Load() - before; w != 0 {
		t.Fatalf("restart made %d writes, want 0", w)
	}
	r2.stop()

	// While it is down: one pod deleted, one added.
	e.deletePod("rs-apps", "p0")
	e.pod("rs-apps", "new", "app", "rs-node", nil)
	before = e.store.writes.Load()
	r3 := e.start(cfg)
	waitFor(t, 10*time.Second, "convergence", func() bool {
		for _, en := range e.entries(prefix) {
			if en.SPIFFEID.Path() == "/ns/rs-apps/sa/app/p0" {
				return false
			}
		}
		return len(e.entries(prefix)) == n
	})
	time.Sleep(500 * time.Millisecond)
	if w := e.store.writes.Load() - before; w != 2 {
		t.Fatalf("restart after one deletion and one creation made %d writes, want 2", w)
	}
	if r3.Writes() != 2 {
		t.Fatalf("registrar counted %d writes, want 2", r3.Writes())
	}
}

// Of two registrars sharing one datastore (servers on one PostgreSQL), only
// the Lease holder writes; when it stops, the other takes over.
func TestLeaderElection(t *testing.T) {
	e := newEnv(t)
	const cluster, class = "election", "election"
	e.namespace("le-apps", nil)
	e.serviceAccount("le-apps", "app")
	e.node("le-node")
	e.apply("csid", fmt.Sprintf(mesh, "le-mesh", class))
	a := e.start(k8sregistrar.Config{Cluster: cluster, ClassName: class, Identity: "server-a"})
	waitFor(t, 10*time.Second, "a leading", a.Leading)
	b := e.start(k8sregistrar.Config{Cluster: cluster, ClassName: class, Identity: "server-b"})
	prefix := k8sregistrar.OwnedPrefix(cluster)
	for i := range 5 {
		e.pod("le-apps", fmt.Sprintf("p%d", i), "app", "le-node", nil)
	}
	waitFor(t, 10*time.Second, "entries", func() bool { return len(e.entries(prefix)) == 5 })
	time.Sleep(time.Second)
	if b.Leading() || b.Writes() != 0 {
		t.Fatalf("follower: leading %v, %d writes", b.Leading(), b.Writes())
	}
	if a.Writes() != 5 {
		t.Fatalf("leader made %d writes, want 5", a.Writes())
	}

	start := time.Now()
	a.stop()
	waitFor(t, 10*time.Second, "b leading", b.Leading)
	t.Logf("failover took %v", time.Since(start))
	e.pod("le-apps", "after", "app", "le-node", nil)
	waitFor(t, 10*time.Second, "the new pod's entry", func() bool { return len(e.entries(prefix)) == 6 })
	if a.Writes() != 5 || b.Writes() != 1 {
		t.Fatalf("writes: a %d (want 5), b %d (want 1)", a.Writes(), b.Writes())
	}
}

// With default_cluster_spiffeid, every pod outside the ignored namespaces
// gets Istio's identity, gateways included, unless a ClusterSPIFFEID of
// its own selects it (the default is a fallback).
func TestDefaultIstioIdentity(t *testing.T) {
	e := newEnv(t)
	const cluster, class = "istio", "istio"
	e.namespace("istio-system", nil)
	e.serviceAccount("istio-system", "istio-ingressgateway-service-account")
	e.namespace("is-apps", nil)
	e.serviceAccount("is-apps", "reviews")
	e.node("is-node")
	e.apply("csid", `
apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterSPIFFEID
metadata: {name: is-special}
spec:
  className: istio
  spiffeIDTemplate: "spiffe://{{ .TrustDomain }}/special/{{ .PodMeta.Name }}"
  podSelector: {matchLabels: {special: "yes"}}
`)
	e.start(k8sregistrar.Config{Cluster: cluster, ClassName: class, DefaultClusterSPIFFEID: true})
	e.pod("istio-system", "istio-ingressgateway-1", "istio-ingressgateway-service-account", "is-node", map[string]string{"istio": "ingressgateway"})
	e.pod("is-apps", "reviews-1", "reviews", "is-node", nil)
	e.pod("is-apps", "special-1", "reviews", "is-node", map[string]string{"special": "yes"})
	prefix := k8sregistrar.OwnedPrefix(cluster)
	want := map[string]bool{
		"/ns/istio-system/sa/istio-ingressgateway-service-account": true,
		"/ns/is-apps/sa/reviews":                                   true,
		"/special/special-1":                                       true,
	}
	waitFor(t, 10*time.Second, "the Istio identities", func() bool {
		got, n := map[string]bool{}, 0
		for _, en := range e.entries(prefix) {
			// Pods of other tests (no namespace controller deletes them)
			// get the default too: look at this test's only.
			if p := en.SPIFFEID.Path(); !strings.HasPrefix(p, "/ns/is-apps/") && !strings.HasPrefix(p, "/ns/istio-system/") && !strings.HasPrefix(p, "/special/") {
				continue
			}
			n++
			if en.SPIFFEID.Path() == "/ns/is-apps/sa/reviews" && got[en.SPIFFEID.Path()] {
				return false // the special pod got the default too
			}
			got[en.SPIFFEID.Path()] = true
		}
		for p := range want {
			if !got[p] {
				return false
			}
		}
		return n == 3
	})
}

// The shipped default ClusterSPIFFEID (deploy/registrar), which has no
// className, is reconciled by a registrar that watches classless objects.
func TestDefaultManifest(t *testing.T) {
	e := newEnv(t)
	b, err := os.ReadFile("../../deploy/registrar/default-clusterspiffeid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e.apply("csid", string(b))
	e.namespace("dm-apps", nil)
	e.serviceAccount("dm-apps", "ratings")
	e.node("dm-node")
	e.start(k8sregistrar.Config{Cluster: "defaultmanifest", WatchClassless: true})
	e.pod("dm-apps", "ratings-1", "ratings", "dm-node", nil)
	waitFor(t, 10*time.Second, "the default identity", func() bool {
		for _, en := range e.entries(k8sregistrar.OwnedPrefix("defaultmanifest")) {
			if en.SPIFFEID.String() == "spiffe://example.org/ns/dm-apps/sa/ratings" {
				return true
			}
		}
		return false
	})
}
