package k8sregistrar_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/hallmarkid/hallmark/server/k8sregistrar"
)

// Editing a ClusterSPIFFEID updates its entries in place; a second one that
// gives the same entry is masked; deleting the first unmasks the second;
// deleting both removes the entries; a ClusterStaticEntry's entry follows
// its object.
func TestClusterSPIFFEIDChanges(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const cluster, class = "crdchanges", "crdchanges"
	e.namespace("cc-apps", nil)
	e.serviceAccount("cc-apps", "app")
	e.node("cc-node")
	for _, name := range []string{"cc-a", "cc-b"} {
		e.apply("csid", fmt.Sprintf(`
apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterSPIFFEID
metadata: {name: %s}
spec:
  className: crdchanges
  spiffeIDTemplate: "spiffe://{{ .TrustDomain }}/v1/{{ .PodSpec.ServiceAccountName }}"
`, name))
	}
	e.apply("cse", `
apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterStaticEntry
metadata: {name: cc-static}
spec:
  className: crdchanges
  spiffeID: spiffe://example.org/vm/backup
  parentID: spiffe://example.org/agent/tpm/abc
  selectors: ["unix:uid:1000"]
`)
	e.start(k8sregistrar.Config{Cluster: cluster, ClassName: class})
	pod := e.pod("cc-apps", "app", "app", "cc-node", nil)
	prefix := k8sregistrar.OwnedPrefix(cluster)
	idA := k8sregistrar.PodEntryID(cluster, "cc-a", string(pod.UID))
	idB := k8sregistrar.PodEntryID(cluster, "cc-b", string(pod.UID))
	idS := k8sregistrar.StaticEntryID(cluster, "cc-static")
	path := func(id string) string { return e.entries(prefix)[id].SPIFFEID.Path() }
	waitFor(t, 10*time.Second, "cc-a's entry and the static one", func() bool {
		return path(idA) == "/v1/app" && path(idS) == "/vm/backup" && len(e.entries(prefix)) == 2
	})
	var st k8sregistrar.ClusterSPIFFEIDStatus
	waitFor(t, 10*time.Second, "cc-b masked", func() bool {
		e.status(k8sregistrar.ClusterSPIFFEIDs, "cc-b", &st)
		return st.Stats.EntriesMasked == 1 && st.Stats.EntriesToSet == 0
	})

	// Edit cc-a: its entry changes in place (one write); cc-b now differs
	// and is set too.
	patch := []byte(`{"spec":{"spiffeIDTemplate":"spiffe://{{ .TrustDomain }}/v2/{{ .PodSpec.ServiceAccountName }}"}}`)
	if _, err := e.dyn.Resource(k8sregistrar.ClusterSPIFFEIDs).Patch(ctx, "cc-a", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the edited entry", func() bool {
		return path(idA) == "/v2/app" && path(idB) == "/v1/app"
	})

	// Deleting the objects deletes their entries, and only theirs.
	for _, n := range []string{"cc-a", "cc-b"} {
		if err := e.dyn.Resource(k8sregistrar.ClusterSPIFFEIDs).Delete(ctx, n, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "pod entries removed", func() bool { return len(e.entries(prefix)) == 1 && path(idS) == "/vm/backup" })
	if err := e.dyn.Resource(k8sregistrar.ClusterStaticEntries).Delete(ctx, "cc-static", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "static entry removed", func() bool { return len(e.entries(prefix)) == 0 })
}
