package deploy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/hallmarkid/hallmark/attestors/k8spsat"
	"github.com/hallmarkid/hallmark/internal/hclconf"
	serverconfig "github.com/hallmarkid/hallmark/server/config"
)

const chartDir = "helm/hallmark"

// The release every value set is rendered as: the names the checks of the
// kustomize manifests expect (hallmark-server, hallmark:hallmark-agent, ...).
var release = common.ReleaseOptions{Name: "hallmark", Namespace: "hallmark", Revision: 1, IsInstall: true}

// clusterSPIFFEID is SPIRE's ClusterSPIFFEID (spire.spiffe.io/v1alpha1),
// whose fields the registrar accepts unchanged; unknown fields are errors.
type clusterSPIFFEID struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SPIFFEIDTemplate          string                `json:"spiffeIDTemplate"`
		PodSelector               *metav1.LabelSelector `json:"podSelector,omitempty"`
		NamespaceSelector         *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
		WorkloadSelectorTemplates []string              `json:"workloadSelectorTemplates,omitempty"`
		DNSNameTemplates          []string              `json:"dnsNameTemplates,omitempty"`
		AutoPopulateDNSNames      bool                  `json:"autoPopulateDNSNames,omitempty"`
		TTL                       string                `json:"ttl,omitempty"`
		JWTTTL                    string                `json:"jwtTtl,omitempty"`
		FederatesWith             []string              `json:"federatesWith,omitempty"`
		Hint                      string                `json:"hint,omitempty"`
		ClassName                 string                `json:"className,omitempty"`
		Fallback                  bool                  `json:"fallback,omitempty"`
		Admin                     bool                  `json:"admin,omitempty"`
		Downstream                bool                  `json:"downstream,omitempty"`
	} `json:"spec"`
}

func init() {
	kinds["spire.spiffe.io/v1alpha1/ClusterSPIFFEID"] = func() any { return &clusterSPIFFEID{} }
}

// Istio's default identity template (istio's own, which its SPIRE guide
// registers with a ClusterSPIFFEID).
const istioIDTemplate = "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}"

var loadChart = sync.OnceValues(func() (*chart.Chart, error) { return loader.Load(chartDir) })

// renderChart renders the chart with values (YAML) as `helm template`
// does, schema validation and strict mode on, and decodes every document
// strictly into its k8s.io/api type.
func renderChart(values string) ([]manifest, error) { return renderChartAs(release, values) }

// renderChartAs renders the chart as release rel.
func renderChartAs(rel common.ReleaseOptions, values string) ([]manifest, error) {
	ch, err := loadChart()
	if err != nil {
		return nil, err
	}
	var vals map[string]any
	if err := yaml.Unmarshal([]byte(values), &vals); err != nil {
		return nil, err
	}
	top, err := chartutil.ToRenderValuesWithSchemaValidation(ch, vals, rel, nil, false)
	if err != nil {
		return nil, err
	}
	out, err := engine.Engine{Strict: true}.Render(ch, top)
	if err != nil {
		return nil, err
	}
	files := make([]string, 0, len(out))
	for f := range out {
		files = append(files, f)
	}
	sort.Strings(files)
	var ms []manifest
	for _, f := range files {
		if !strings.HasSuffix(f, ".yaml") {
			continue
		}
		for i, doc := range docSep.Split(out[f], -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			obj, err := decodeStrict([]byte(doc))
			if err != nil {
				return nil, fmt.Errorf("%s (document %d): %w\n%s", f, i+1, err, doc)
			}
			ms = append(ms, manifest{file: f, obj: obj})
		}
	}
	return ms, nil
}

// valueSets are the configurations the chart is rendered with.
var valueSets = []struct {
	name, values string
}{
	{name: "default (SQLite)", values: ""},
	{name: "postgres HA", values: "server:\n  replicas: 2\n  datastore:\n    type: postgres\n"},
	{name: "istio", values: "istio:\n  enabled: true\n"},
	{name: "csi disabled", values: "csi:\n  enabled: false\n"},
	{name: "no registrar", values: "registrar:\n  enabled: false\n"},
	{name: "kind", values: "agent:\n  skipKubeletVerification: true\n  cgroupRoot: /kubelet.slice\n"},
}

func TestHelmChart(t *testing.T) {
	byKind := make(map[string]map[string]manifest) // value set -> kind/name -> object
	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			ms, err := renderChart(vs.values)
			if err != nil {
				t.Fatal(err)
			}
			var vals struct {
				Server struct {
					Replicas  int
					Datastore struct{ Type string }
				}
				Istio     struct{ Enabled bool }
				CSI       struct{ Enabled *bool } `json:"csi"`
				Registrar struct{ Enabled *bool }
			}
			if err := yaml.Unmarshal([]byte(vs.values), &vals); err != nil {
				t.Fatal(err)
			}
			checkRendered(t, ms, renderedWant{
				replicas:  max(vals.Server.Replicas, 1),
				postgres:  vals.Server.Datastore.Type == "postgres",
				istio:     vals.Istio.Enabled,
				csi:       vals.CSI.Enabled == nil || *vals.CSI.Enabled,
				registrar: vals.Registrar.Enabled == nil || *vals.Registrar.Enabled,
			})
			objs := make(map[string]manifest)
			for _, m := range ms {
				if _, dup := objs[m.kindName()]; dup {
					t.Errorf("%s rendered twice", m.kindName())
				}
				objs[m.kindName()] = m
			}
			byKind[vs.name] = objs
		})
	}
	// `helm upgrade` from the default to any other value set applies over
	// the running release: no immutable field may differ.
	base := byKind[valueSets[0].name]
	for _, vs := range valueSets[1:] {
		for kn, m := range byKind[vs.name] {
			if b, ok := base[kn]; ok {
				for _, c := range immutableChanges(b.obj, m.obj, true) {
					t.Errorf("upgrade to %q: %s changes immutable %s", vs.name, kn, c)
				}
			}
		}
	}
}

// renderedWant is what a value set asks for.
type renderedWant struct {
	replicas                        int
	postgres, istio, csi, registrar bool
}

func checkRendered(t *testing.T, ms []manifest, want renderedWant) {
	t.Helper()
	defined := make(map[string]bool)
	for _, m := range ms {
		defined[m.kindName()] = true
	}
	var servers, agents int
	var agent agentFile
	var registrar *registrarHCL
	for _, m := range ms {
		cm, ok := m.obj.(*corev1.ConfigMap)
		if !ok {
			continue
		}
		for key, val := range cm.Data {
			name := m.file + ":" + key
			switch key {
			case "server.hcl":
				var f serverFile
				f, registrar = parseServerHCLRegistrar(t, name, []byte(val))
				checkK8sServerConfig(t, name, f, ms)
				if want.postgres != (f.Datastore.Type == "postgres") {
					t.Errorf("%s: datastore %q", name, f.Datastore.Type)
				}
				if registrar != nil {
					checkRegistrarBlock(t, name, registrar, f)
				}
				servers++
			case "agent.hcl":
				agent = parseAgentHCL(t, name, []byte(val))
				checkK8sAgentConfig(t, name, agent, ms)
				if want.istio != (agent.SDS.ExtraSocketPath != "") {
					t.Errorf("%s: SDS-only socket %q with istio.enabled %v", name, agent.SDS.ExtraSocketPath, want.istio)
				}
				agents++
			default:
				t.Errorf("%s: ConfigMap key %q: no parser knows it", m.file, key)
			}
		}
	}
	if servers != 1 || agents != 1 {
		t.Fatalf("rendered %d server and %d agent configurations, want 1 and 1", servers, agents)
	}
	for _, m := range ms {
		for name, spec := range podSpecs([]manifest{m}) {
			checkPodSpec(t, m.file+": "+name, spec, false, defined)
		}
	}
	checkRBAC(t, ms, defined)
	if (registrar != nil) != want.registrar {
		t.Errorf("k8s_registrar block rendered: %v, want %v", registrar != nil, want.registrar)
	}
	checkRegistrarRBAC(t, ms, want.registrar)
	// Istio's identity for every pod, gateways included, out of the box.
	id := find[*clusterSPIFFEID](ms, "ClusterSPIFFEID/hallmark-workloads")
	if want.registrar != (id != nil) || id != nil && id.Spec.SPIFFEIDTemplate != istioIDTemplate {
		t.Errorf("ClusterSPIFFEID/hallmark-workloads with Istio's template %q: rendered %v, want %v", istioIDTemplate, id != nil, want.registrar)
	}

	sts := find[*appsv1.StatefulSet](ms, "StatefulSet/hallmark-server")
	if sts.Spec.Replicas == nil || int(*sts.Spec.Replicas) != want.replicas {
		t.Errorf("StatefulSet replicas %v, want %d", sts.Spec.Replicas, want.replicas)
	}
	if c, _ := container(t, &sts.Spec.Template.Spec, "hallmark-server"); want.postgres != (envVar(c, "PGPASSWORD") != nil) {
		t.Errorf("PGPASSWORD set: %v, want %v", envVar(c, "PGPASSWORD") != nil, want.postgres)
	}
	if pdb := defined["PodDisruptionBudget/hallmark-server"]; pdb != (want.replicas > 1) {
		t.Errorf("PodDisruptionBudget rendered: %v, with %d replicas", pdb, want.replicas)
	}

	dirs := []string{path.Dir(agent.SocketPath)}
	if want.istio {
		dirs = append(dirs, path.Dir(agent.SDS.ExtraSocketPath))
	}
	if !want.csi {
		for kn := range defined {
			if strings.HasPrefix(kn, "CSIDriver/") || kn == "DaemonSet/hallmark-csi-driver" {
				t.Errorf("csi.enabled false, yet %s is rendered", kn)
			}
		}
		return
	}
	plugins := checkCSI(t, ms, dirs)
	if !want.istio {
		return
	}
	// The chart and deploy/istio/istio-operator.yaml agree: the template
	// mounts the instance that serves the chart's SDS-only directory.
	io := find[*istioOperator](loadManifests(t, "istio/istio-operator.yaml"), "IstioOperator/hallmark")
	checkIstioTemplate(t, "istio/istio-operator.yaml with the chart", io.Spec.Values.SidecarInjectorWebhook.Templates["hallmark"], agent, plugins)
	if io.Spec.MeshConfig.TrustDomain != agent.TrustDomain.Name() {
		t.Errorf("Istio trust domain %q, chart %q", io.Spec.MeshConfig.TrustDomain, agent.TrustDomain.Name())
	}
}

// registrarHCL is the k8s_registrar block of the server configuration
// (issue 13; docs/kubernetes-registrar.md), decoded strictly.
type registrarHCL struct {
	Cluster                 string   `hcl:"cluster"`
	KubeConfigFile          string   `hcl:"kube_config_file,optional"`
	InCluster               bool     `hcl:"in_cluster,optional"`
	LeaderElectionNamespace string   `hcl:"leader_election_namespace,optional"`
	IgnoreNamespaces        []string `hcl:"ignore_namespaces,optional"`
	ClusterDomain           string   `hcl:"cluster_domain,optional"`
	ClassName               string   `hcl:"class_name,optional"`
	WatchClassless          *bool    `hcl:"watch_classless,optional"`
	DefaultClusterSPIFFEID  bool     `hcl:"default_cluster_spiffeid,optional"`
}

// parseServerHCLRegistrar parses a server configuration with
// parseServerHCL and returns its k8s_registrar block, if any. Where
// server/config does not know that block yet (before the registrar lands),
// the block is blanked out for the real parser, as splitOwnBlocks does.
func parseServerHCLRegistrar(t *testing.T, name string, src []byte) (serverFile, *registrarHCL) {
	t.Helper()
	file, diags := hclsyntax.ParseConfig(src, name, hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("%s: %v", name, diags)
	}
	var reg *registrarHCL
	rest := src
	for _, b := range file.Body.(*hclsyntax.Body).Blocks {
		if b.Type != "k8s_registrar" {
			continue
		}
		if reg != nil {
			t.Fatalf("%s: duplicate k8s_registrar block", b.Range())
		}
		reg = &registrarHCL{}
		if _, d := hclconf.Decode(b.Body, reg); d.HasErrors() {
			t.Fatalf("%s: %v", name, hclconf.DiagError("k8s_registrar", d))
		}
		if _, err := serverconfig.Parse(name, src); err != nil && strings.Contains(err.Error(), `Blocks of type "k8s_registrar" are not expected here`) {
			t.Logf("%s: server/config does not know k8s_registrar yet; parsing the rest", name)
			rest = append([]byte(nil), src...)
			r := b.Range()
			for i := r.Start.Byte; i < r.End.Byte; i++ {
				if rest[i] != '\n' {
					rest[i] = ' '
				}
			}
		}
	}
	return parseServerHCL(t, name, rest), reg
}

func checkRegistrarBlock(t *testing.T, name string, r *registrarHCL, f serverFile) {
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

func TestHelmValuesRefused(t *testing.T) {
	tests := []struct {
		name, values, wantErr string
	}{
		{name: "unknown key", values: "server:\n  replica: 2\n", wantErr: "replica"},
		{name: "SQLite with two servers", values: "server:\n  replicas: 2\n", wantErr: "needs server.datastore.type = postgres"},
		{name: "bad trust domain", values: "trustDomain: spiffe://example.org\n", wantErr: "trustDomain"},
		{name: "token too long-lived for the schema", values: "agent:\n  tokenExpirationSeconds: 100\n", wantErr: "tokenExpirationSeconds"},
		{name: "istio without csi", values: "istio:\n  enabled: true\ncsi:\n  enabled: false\n", wantErr: "istio.enabled needs csi.enabled"},
		{name: "one directory for both sockets", values: "istio:\n  enabled: true\nagent:\n  sdsSocketDir: /run/hallmark/sockets\n", wantErr: "must differ"},
		{name: "unknown datastore", values: "server:\n  datastore:\n    type: mysql\n", wantErr: "type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := renderChart(tt.values)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestHelmLint runs `helm lint`'s rules (chart metadata, templates, values
// schema, YAML of every rendered object) for each value set: any message
// above INFO fails (INFO: e.g. "icon is recommended").
func TestHelmLint(t *testing.T) {
	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			var vals map[string]any
			if err := yaml.Unmarshal([]byte(vs.values), &vals); err != nil {
				t.Fatal(err)
			}
			l := lint.RunAll(chartDir, vals, release.Namespace)
			for _, m := range l.Messages {
				if m.Severity > support.InfoSev {
					t.Error(m)
				}
			}
		})
	}
}

// istiodValues is the part of Istio's istiod chart values that
// helm/istiod-values.yaml sets; unknown fields are errors.
type istiodValues struct {
	MeshConfig struct {
		TrustDomain string `json:"trustDomain"`
	} `json:"meshConfig"`
	Pilot struct {
		CNI struct {
			Enabled bool `json:"enabled"`
		} `json:"cni"`
	} `json:"pilot"`
	SidecarInjectorWebhook struct {
		Templates map[string]string `json:"templates"`
	} `json:"sidecarInjectorWebhook"`
}

// TestIstioHelmValues: the values for Istio's Helm charts say what the
// IstioOperator says, and work with the chart's istio value set.
func TestIstioHelmValues(t *testing.T) {
	data, err := os.ReadFile("helm/istiod-values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		t.Fatal(err)
	}
	var v istiodValues
	if err := strictJSON(j, &v); err != nil {
		t.Fatalf("helm/istiod-values.yaml: %v", err)
	}
	io := find[*istioOperator](loadManifests(t, "istio/istio-operator.yaml"), "IstioOperator/hallmark")
	if v.MeshConfig.TrustDomain != io.Spec.MeshConfig.TrustDomain || !v.Pilot.CNI.Enabled ||
		v.SidecarInjectorWebhook.Templates["hallmark"] != io.Spec.Values.SidecarInjectorWebhook.Templates["hallmark"] {
		t.Error("helm/istiod-values.yaml and istio/istio-operator.yaml differ in trust domain, CNI or the hallmark template")
	}
	ms, err := renderChart("istio:\n  enabled: true\n")
	if err != nil {
		t.Fatal(err)
	}
	var agent agentFile
	for _, m := range ms {
		if cm, ok := m.obj.(*corev1.ConfigMap); ok && cm.Data["agent.hcl"] != "" {
			agent = parseAgentHCL(t, m.file, []byte(cm.Data["agent.hcl"]))
		}
	}
	plugins := checkCSI(t, ms, []string{path.Dir(agent.SocketPath), path.Dir(agent.SDS.ExtraSocketPath)})
	checkIstioTemplate(t, "helm/istiod-values.yaml", v.SidecarInjectorWebhook.Templates["hallmark"], agent, plugins)
}

// TestHelmChartOtherRelease: another release name in another namespace
// renders objects that reference each other by the new names only (no
// name or namespace of the default release is written into a template).
func TestHelmChartOtherRelease(t *testing.T) {
	rel := common.ReleaseOptions{Name: "idp", Namespace: "security", Revision: 1, IsInstall: true}
	ms, err := renderChartAs(rel, "istio:\n  enabled: true\n")
	if err != nil {
		t.Fatal(err)
	}
	defined := make(map[string]bool)
	for _, m := range ms {
		defined[m.kindName()] = true
	}
	for _, m := range ms {
		kn := m.kindName()
		name := kn[strings.Index(kn, "/")+1:]
		if !strings.HasPrefix(name, "idp-") && !strings.HasPrefix(kn, "CSIDriver/") {
			t.Errorf("%s: not named after the release", kn)
		}
		for name, spec := range podSpecs([]manifest{m}) {
			checkPodSpec(t, m.file+": "+name, spec, false, defined)
		}
		switch o := m.obj.(type) {
		case *rbacv1.ClusterRoleBinding:
			checkSubjects(t, kn, o.Subjects, defined, rel.Namespace)
		case *rbacv1.RoleBinding:
			checkSubjects(t, kn, o.Subjects, defined, rel.Namespace)
		}
		j, _ := json.Marshal(m.obj)
		for _, bad := range []string{`"namespace":"hallmark"`, `.hallmark.svc`, `hallmark:hallmark-`, `"hallmark-bundle"`} {
			if strings.Contains(string(j), bad) {
				t.Errorf("%s mentions the default release (%s)", kn, bad)
			}
		}
		if sts, ok := m.obj.(*appsv1.StatefulSet); ok && !defined["Service/"+sts.Spec.ServiceName] {
			t.Errorf("%s: serviceName %s is no Service of the release", kn, sts.Spec.ServiceName)
		}
	}
	for _, m := range ms {
		cm, ok := m.obj.(*corev1.ConfigMap)
		if !ok {
			continue
		}
		for key, val := range cm.Data {
			for _, want := range map[string][]string{
				"server.hcl": {`"security:idp-agent"`, `leader_election_namespace = "security"`, `config_map     = "idp-bundle"`, `namespace      = "security"`},
				"agent.hcl":  {`"idp-server.security.svc:8081"`},
			}[key] {
				if !strings.Contains(val, want) {
					t.Errorf("%s: %s lacks %s", m.kindName(), key, want)
				}
			}
		}
	}
}

func checkSubjects(t *testing.T, kn string, subjects []rbacv1.Subject, defined map[string]bool, ns string) {
	t.Helper()
	for _, s := range subjects {
		if s.Kind != "ServiceAccount" || !defined["ServiceAccount/"+s.Name] || s.Namespace != ns {
			t.Errorf("%s: subject %s %s/%s is no service account of the release", kn, s.Kind, s.Namespace, s.Name)
		}
	}
}
