package deploy_test

import (
	"os"
	"slices"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/hallmarkid/hallmark/attestors/k8spsat"
	"github.com/hallmarkid/hallmark/internal/hclconf"
	"github.com/hallmarkid/hallmark/server/k8sregistrar"
)

// The chart's k8s_registrar block and the RBAC the registrar needs.

// parseServerHCLRegistrar parses a server configuration with
// parseServerHCL and returns its k8s_registrar block, if any, decoded
// strictly into the registrar's own configuration type and validated.
func parseServerHCLRegistrar(t *testing.T, name string, src []byte) (serverFile, *k8sregistrar.HCLConfig) {
	t.Helper()
	file, diags := hclsyntax.ParseConfig(src, name, hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("%s: %v", name, diags)
	}
	var reg *k8sregistrar.HCLConfig
	for _, b := range file.Body.(*hclsyntax.Body).Blocks {
		if b.Type != "k8s_registrar" {
			continue
		}
		if reg != nil {
			t.Fatalf("%s: duplicate k8s_registrar block", b.Range())
		}
		reg = &k8sregistrar.HCLConfig{}
		if _, d := hclconf.Decode(b.Body, reg); d.HasErrors() {
			t.Fatalf("%s: %v", name, hclconf.DiagError("k8s_registrar", d))
		}
		if err := reg.Validate(); err != nil {
			t.Fatalf("%s: k8s_registrar: %v", name, err)
		}
	}
	return parseServerHCL(t, name, src), reg
}

func checkRegistrarBlock(t *testing.T, name string, r *k8sregistrar.HCLConfig, f serverFile) {
	t.Helper()
	if !r.InCluster || r.LeaderElectionNamespace != release.Namespace {
		t.Errorf("%s: k8s_registrar: in_cluster %v, leader_election_namespace %q; want true and the release namespace %q",
			name, r.InCluster, r.LeaderElectionNamespace, release.Namespace)
	}
	for _, ns := range []string{"kube-system", release.Namespace} {
		if !slices.Contains(r.IgnoreNamespaces, ns) {
			t.Errorf("%s: k8s_registrar: ignore_namespaces %q leaves %s in", name, r.IgnoreNamespaces, ns)
		}
	}
	if r.DefaultClusterSPIFFEID {
		t.Errorf("%s: k8s_registrar: the chart ships its default as a ClusterSPIFFEID object; the built-in one would duplicate it", name)
	}
	// Entries are parented to the k8s_psat agents of the same cluster name.
	var clusters []string
	for _, b := range f.NodeAttestors {
		if b.Kind != k8spsat.Type {
			continue
		}
		var psat k8spsat.ServerConfig
		if err := hclconf.DecodeBlock(b, &psat); err != nil {
			t.Fatal(err)
		}
		for _, cl := range psat.Clusters {
			clusters = append(clusters, cl.Name)
		}
	}
	if !slices.Contains(clusters, r.Cluster) {
		t.Errorf("%s: k8s_registrar cluster %q is none of the k8s_psat clusters %q", name, r.Cluster, clusters)
	}
}

// grants reports whether rules allow verb on resource of group.
func grants(rules []rbacv1.PolicyRule, group, resource, verb string) bool {
	for _, r := range rules {
		if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) {
			return true
		}
	}
	return false
}

func checkRegistrarRBAC(t *testing.T, ms []manifest, enabled bool) {
	t.Helper()
	type rule struct{ group, resource, verb string }
	var want []rule
	for _, r := range []string{"pods", "nodes", "namespaces", "endpoints", "services"} {
		for _, v := range []string{"get", "list", "watch"} {
			want = append(want, rule{"", r, v})
		}
	}
	for _, v := range []string{"get", "list", "watch"} {
		want = append(want, rule{"discovery.k8s.io", "endpointslices", v})
	}
	for _, r := range []string{"clusterspiffeids", "clusterstaticentries", "clusterfederatedtrustdomains"} {
		for _, v := range []string{"get", "list", "watch"} {
			want = append(want, rule{"spire.spiffe.io", r, v})
		}
		for _, v := range []string{"get", "update", "patch"} {
			want = append(want, rule{"spire.spiffe.io", r + "/status", v})
		}
	}
	cr := find[*rbacv1.ClusterRole](ms, "ClusterRole/hallmark-server-registrar")
	role := find[*rbacv1.Role](ms, "Role/hallmark-server-registrar-lease")
	if !enabled {
		if cr != nil || role != nil {
			t.Error("registrar disabled, yet its RBAC is rendered")
		}
		return
	}
	if cr == nil || role == nil {
		t.Fatal("ClusterRole/hallmark-server-registrar or Role/hallmark-server-registrar-lease missing")
	}
	for _, w := range want {
		if !grants(cr.Rules, w.group, w.resource, w.verb) {
			t.Errorf("ClusterRole/hallmark-server-registrar does not allow %s %s (group %q)", w.verb, w.resource, w.group)
		}
	}
	for _, v := range []string{"get", "create", "update", "patch"} {
		if !grants(role.Rules, "coordination.k8s.io", "leases", v) {
			t.Errorf("Role/hallmark-server-registrar-lease does not allow %s leases", v)
		}
	}
	// What the registrar's own manifests grant (deploy/kubernetes/base,
	// written with the registrar), the chart grants too.
	if base, err := os.Stat("kubernetes/base/registrar-rbac.yaml"); err == nil && !base.IsDir() {
		for _, m := range loadManifests(t, "kubernetes/base/registrar-rbac.yaml") {
			var rules, have []rbacv1.PolicyRule
			switch o := m.obj.(type) {
			case *rbacv1.ClusterRole:
				rules, have = o.Rules, cr.Rules
			case *rbacv1.Role:
				rules, have = o.Rules, role.Rules
			}
			for _, r := range rules {
				for _, g := range r.APIGroups {
					for _, res := range r.Resources {
						for _, v := range r.Verbs {
							if !grants(have, g, res, v) {
								t.Errorf("%s: %s grants %s %s (group %q); the chart does not", m.file, m.kindName(), v, res, g)
							}
						}
					}
				}
			}
		}
	}
	if role.Namespace != release.Namespace {
		t.Errorf("the lease Role is in %q, the registrar elects in %q", role.Namespace, release.Namespace)
	}
}
