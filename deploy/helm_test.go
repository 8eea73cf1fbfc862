package deploy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/hallmarkid/hallmark/server/k8sregistrar"
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
	var registrar *k8sregistrar.HCLConfig
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
