package k8sregistrar_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/k8sregistrar"
)

func selectorStrings(ss []registration.Selector) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.String()
	}
	return out
}

// A pod bound to a node gets its entry, parented to that node's k8s_psat
// agent and selecting it by namespace, service account and UID; a label
// change updates the entry in place; deleting the pod deletes it; entries
// the registrar does not own are never touched.
func TestPodLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const cluster, class = "lifecycle", "lifecycle"
	e.namespace("lc-apps", map[string]string{"team": "a"})
	e.serviceAccount("lc-apps", "web")
	node := e.node("lc-node-1")

	// An operator's entry and another cluster's registrar entry.
	agent, _ := k8sregistrar.AgentID(td, cluster, string(node.UID))
	foreign := []registration.Entry{
		{ID: "operator-made", SPIFFEID: spiffeid.RequireFromPath(td, "/ns/lc-apps/sa/web"), ParentID: agent,
			Selectors: []registration.Selector{{Type: "k8s", Value: "sa:web"}}},
		{ID: k8sregistrar.OwnedPrefix("other") + "x", SPIFFEID: spiffeid.RequireFromPath(td, "/other"), ParentID: agent,
			Selectors: []registration.Selector{{Type: "k8s", Value: "sa:other"}}},
	}
	if res, err := e.store.Store.CreateEntries(ctx, foreign); err != nil || res[0].Err != nil || res[1].Err != nil {
		t.Fatal(err, res)
	}

	e.apply("csid", `
apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterSPIFFEID
metadata: {name: lc-istio}
spec:
  className: lifecycle
  spiffeIDTemplate: "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}"
  namespaceSelector: {matchLabels: {team: a}}
  workloadSelectorTemplates: ["k8s:pod-label:tier:{{ index .PodMeta.Labels \"tier\" }}"]
  dnsNameTemplates: ["{{ .PodMeta.Name }}.{{ .PodMeta.Namespace }}.{{ .ClusterDomain }}"]
  autoPopulateDNSNames: true
  ttl: 30m
  jwtTtl: 5m
  hint: external
  federatesWith: ["partner.example"]
`)
	r := e.start(k8sregistrar.Config{Cluster: cluster, ClassName: class})
	pod := e.pod("lc-apps", "web-1", "web", "lc-node-1", map[string]string{"tier": "front"})
	id := k8sregistrar.PodEntryID(cluster, "lc-istio", string(pod.UID))
	prefix := k8sregistrar.OwnedPrefix(cluster)
	waitFor(t, 10*time.Second, "the pod's entry", func() bool { return len(e.entries(prefix)) == 1 })
	got := e.entries(prefix)[id]
	if got.SPIFFEID.String() != "spiffe://example.org/ns/lc-apps/sa/web" || got.ParentID != agent {
		t.Fatalf("entry = %+v, want the Istio ID under %s", got, agent)
	}
	wantSel := []string{"k8s:ns:lc-apps", "k8s:pod-label:tier:front", "k8s:pod-uid:" + string(pod.UID), "k8s:sa:web"}
	if s := selectorStrings(got.Selectors); !slices.Equal(s, wantSel) {
		t.Fatalf("selectors = %v, want %v", s, wantSel)
	}
	if got.X509SVIDTTL != 30*time.Minute || got.JWTSVIDTTL != 5*time.Minute || got.Hint != "external" ||
		len(got.FederatesWith) != 1 || !slices.Equal(got.DNSNames, []string{"web-1.lc-apps.cluster.local"}) {
		t.Fatalf("entry fields = %+v", got)
	}

	// A service's endpoint slice targeting the pod adds its DNS names.
	port := int32(80)
	if _, err := e.kube.DiscoveryV1().EndpointSlices("lc-apps").Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-abc", Labels: map[string]string{"kubernetes.io/service-name": "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.5"},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "lc-apps", Name: "web-1"}}},
		Ports: []discoveryv1.EndpointPort{{Port: &port}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "service DNS names", func() bool {
		return slices.Equal(e.entries(prefix)[id].DNSNames, []string{"web-1.lc-apps.cluster.local",
			"web.lc-apps.svc.cluster.local", "web.lc-apps.svc", "web.lc-apps", "web"})
	})

	// Relabel: the same entry is updated in place.
	before := e.store.writes.Load()
	patch := []byte(`{"metadata":{"labels":{"tier":"back"}}}`)
	if _, err := e.kube.CoreV1().Pods("lc-apps").Patch(ctx, "web-1", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the relabelled entry", func() bool {
		return slices.Contains(selectorStrings(e.entries(prefix)[id].Selectors), "k8s:pod-label:tier:back")
	})
	if n := len(e.entries(prefix)); n != 1 {
		t.Fatalf("%d entries after relabel, want 1", n)
	}
	if w := e.store.writes.Load() - before; w != 1 {
		t.Errorf("relabel made %d writes, want 1", w)
	}

	// A pod that finished keeps no entry; a deleted one neither.
	pod2 := e.pod("lc-apps", "job-1", "web", "lc-node-1", map[string]string{"tier": "batch"})
	id2 := k8sregistrar.PodEntryID(cluster, "lc-istio", string(pod2.UID))
	waitFor(t, 10*time.Second, "the job's entry", func() bool { _, ok := e.entries(prefix)[id2]; return ok })
	pod2.Status.Phase = corev1.PodSucceeded
	if _, err := e.kube.CoreV1().Pods("lc-apps").UpdateStatus(ctx, pod2, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the finished job's entry removed", func() bool { _, ok := e.entries(prefix)[id2]; return !ok })
	e.deletePod("lc-apps", "web-1")
	waitFor(t, 10*time.Second, "the deleted pod's entry removed", func() bool { return len(e.entries(prefix)) == 0 })

	for _, f := range foreign {
		if _, err := e.store.GetEntry(ctx, f.ID); err != nil {
			t.Errorf("entry %s not owned by the registrar: %v", f.ID, err)
		}
	}
	var st k8sregistrar.ClusterSPIFFEIDStatus
	waitFor(t, 10*time.Second, "status", func() bool {
		e.status(k8sregistrar.ClusterSPIFFEIDs, "lc-istio", &st)
		return len(st.Conditions) == 1 && st.Conditions[0].Status == metav1.ConditionTrue && st.Stats.PodsSelected == 0
	})
	r.stop()
}

// Pods are selected by their namespace's labels, and a namespace relabel
// brings its pods in; ignored namespaces get nothing.
func TestNamespaceSelector(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const cluster = "nssel"
	e.namespace("nss-in", map[string]string{"mesh": "on"})
	e.namespace("nss-out", nil)
	e.namespace("nss-ignored", map[string]string{"mesh": "on"})
	for _, ns := range []string{"nss-in", "nss-out", "nss-ignored"} {
		e.serviceAccount(ns, "app")
	}
	e.node("nss-node")
	e.apply("csid", `
apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterSPIFFEID
metadata: {name: nss-mesh}
spec:
  className: nssel
  spiffeIDTemplate: "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}"
  namespaceSelector: {matchLabels: {mesh: "on"}}
`)
	e.start(k8sregistrar.Config{Cluster: cluster, ClassName: "nssel", IgnoreNamespaces: []string{"nss-ignored"}})
	for _, ns := range []string{"nss-in", "nss-out", "nss-ignored"} {
		e.pod(ns, "app", "app", "nss-node", nil)
	}
	prefix := k8sregistrar.OwnedPrefix(cluster)
	ids := func() []string {
		var out []string
		for _, en := range e.entries(prefix) {
			out = append(out, en.SPIFFEID.Path())
		}
		slices.Sort(out)
		return out
	}
	waitFor(t, 10*time.Second, "nss-in's entry", func() bool { return slices.Equal(ids(), []string{"/ns/nss-in/sa/app"}) })
	var st k8sregistrar.ClusterSPIFFEIDStatus
	waitFor(t, 10*time.Second, "stats", func() bool {
		e.status(k8sregistrar.ClusterSPIFFEIDs, "nss-mesh", &st)
		return st.Stats.NamespacesSelected == 1 && st.Stats.NamespacesIgnored == 1 && st.Stats.PodsSelected == 1 && st.Stats.EntriesToSet == 1
	})
	if _, err := e.kube.CoreV1().Namespaces().Patch(ctx, "nss-out", types.MergePatchType, []byte(`{"metadata":{"labels":{"mesh":"on"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "nss-out's entry", func() bool {
		return slices.Equal(ids(), []string{"/ns/nss-in/sa/app", "/ns/nss-out/sa/app"})
	})
}

// Template output is untrusted: an ID outside the trust domain or in a
// reserved namespace, a bad selector, a bad template and fields Hallmark
// does not honour are reported in the objects' status, never stored.
func TestTemplateFailuresInStatus(t *testing.T) {
	e := newEnv(t)
	const cluster = "tmplfail"
	e.namespace("tf-apps", nil)
	e.serviceAccount("tf-apps", "app")
	e.node("tf-node")
	for name, spec := range map[string]string{
		"tf-other-td":   `spiffeIDTemplate: "spiffe://evil.example/ns/{{ .PodMeta.Namespace }}"`,
		"tf-reserved":   `spiffeIDTemplate: "spiffe://{{ .TrustDomain }}/agent/k8s_psat/{{ .ClusterName }}/{{ .NodeMeta.UID }}"`,
		"tf-hallmark":   `spiffeIDTemplate: "spiffe://{{ .TrustDomain }}/hallmark/server"`,
		"tf-bad-sel":    "spiffeIDTemplate: \"spiffe://{{ .TrustDomain }}/sel\"\n  workloadSelectorTemplates: [\"nocolon\"]",
		"tf-missing":    `spiffeIDTemplate: "spiffe://{{ .TrustDomain }}/{{ .PodMeta.Nope }}"`,
		"tf-syntax":     `spiffeIDTemplate: "spiffe://{{ .TrustDomain "`,
		"tf-admin":      "spiffeIDTemplate: \"spiffe://{{ .TrustDomain }}/admin\"\n  admin: true",
		"tf-downstream": "spiffeIDTemplate: \"spiffe://{{ .TrustDomain }}/ds\"\n  downstream: true",
	} {
		e.apply("csid", fmt.Sprintf("apiVersion: spire.spiffe.io/v1alpha1\nkind: ClusterSPIFFEID\nmetadata: {name: %s}\nspec:\n  className: tmplfail\n  %s\n", name, spec))
	}
	e.apply("cse", `
apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterStaticEntry
metadata: {name: tf-static-ok}
spec:
  className: tmplfail
  spiffeID: spiffe://example.org/vm/db
  parentID: spiffe://example.org/agent/tpm/abc
  selectors: ["unix:uid:1000"]
`)
	e.apply("cse", `
apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterStaticEntry
metadata: {name: tf-static-reserved}
spec:
  className: tmplfail
  spiffeID: spiffe://example.org/agent/forged
  parentID: spiffe://example.org/agent/tpm/abc
  selectors: ["unix:uid:0"]
`)
	e.apply("cftd", `
apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterFederatedTrustDomain
metadata: {name: tf-partner}
spec:
  className: tmplfail
  trustDomain: partner.example
  bundleEndpointURL: https://partner.example/bundle
  bundleEndpointProfile: {type: https_web}
`)
	e.start(k8sregistrar.Config{Cluster: cluster, ClassName: "tmplfail"})
	e.pod("tf-apps", "app", "app", "tf-node", nil)

	want := map[string]string{
		"tf-other-td": k8sregistrar.ReasonRenderFailures, "tf-reserved": k8sregistrar.ReasonRenderFailures,
		"tf-hallmark": k8sregistrar.ReasonRenderFailures, "tf-bad-sel": k8sregistrar.ReasonRenderFailures,
		"tf-missing": k8sregistrar.ReasonRenderFailures, "tf-syntax": k8sregistrar.ReasonInvalidSpec,
		"tf-admin": k8sregistrar.ReasonUnsupported, "tf-downstream": k8sregistrar.ReasonUnsupported,
	}
	for name, reason := range want {
		var st k8sregistrar.ClusterSPIFFEIDStatus
		waitFor(t, 10*time.Second, name+" status", func() bool {
			e.status(k8sregistrar.ClusterSPIFFEIDs, name, &st)
			return len(st.Conditions) == 1 && st.Conditions[0].Reason == reason
		})
		if st.Conditions[0].Status != metav1.ConditionFalse {
			t.Errorf("%s: condition %+v", name, st.Conditions[0])
		}
		if reason == k8sregistrar.ReasonRenderFailures && st.Stats.PodEntryRenderFailures != 1 {
			t.Errorf("%s: stats %+v", name, st.Stats)
		}
		t.Logf("%s: %s", name, st.Conditions[0].Message)
	}
	var ok, bad k8sregistrar.ClusterStaticEntryStatus
	waitFor(t, 10*time.Second, "static entry status", func() bool {
		e.status(k8sregistrar.ClusterStaticEntries, "tf-static-ok", &ok)
		e.status(k8sregistrar.ClusterStaticEntries, "tf-static-reserved", &bad)
		return ok.Set && len(bad.Conditions) == 1
	})
	if bad.Rendered || bad.Set || !strings.Contains(bad.Conditions[0].Message, "reserved") {
		t.Errorf("reserved static entry status = %+v", bad)
	}
	var fed struct {
		Conditions []metav1.Condition `json:"conditions"`
	}
	waitFor(t, 10*time.Second, "federation status", func() bool {
		e.status(k8sregistrar.ClusterFederatedTrustDomains, "tf-partner", &fed)
		return len(fed.Conditions) == 1
	})
	if fed.Conditions[0].Reason != k8sregistrar.ReasonNotConfigured {
		t.Errorf("federation condition = %+v", fed.Conditions[0])
	}
	// Only the valid static entry was stored.
	ents := e.entries(k8sregistrar.OwnedPrefix(cluster))
	if len(ents) != 1 {
		t.Fatalf("stored %d entries, want only the valid static one: %v", len(ents), ents)
	}
	for _, en := range ents {
		if en.SPIFFEID.Path() != "/vm/db" {
			t.Fatalf("stored %v", en.SPIFFEID)
		}
	}
}
