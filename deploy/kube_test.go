package deploy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/hallmarkid/hallmark/attestors/k8spsat"
	"github.com/hallmarkid/hallmark/internal/hclconf"
)

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// kinds maps apiVersion/kind to a new typed object.
var kinds = map[string]func() any{
	"apps/v1/StatefulSet":                      func() any { return &appsv1.StatefulSet{} },
	"apps/v1/DaemonSet":                        func() any { return &appsv1.DaemonSet{} },
	"apps/v1/Deployment":                       func() any { return &appsv1.Deployment{} },
	"v1/ConfigMap":                             func() any { return &corev1.ConfigMap{} },
	"v1/Service":                               func() any { return &corev1.Service{} },
	"v1/ServiceAccount":                        func() any { return &corev1.ServiceAccount{} },
	"v1/Namespace":                             func() any { return &corev1.Namespace{} },
	"v1/PersistentVolumeClaim":                 func() any { return &corev1.PersistentVolumeClaim{} },
	"rbac.authorization.k8s.io/v1/ClusterRole": func() any { return &rbacv1.ClusterRole{} },
	"rbac.authorization.k8s.io/v1/ClusterRoleBinding": func() any { return &rbacv1.ClusterRoleBinding{} },
	"rbac.authorization.k8s.io/v1/Role":               func() any { return &rbacv1.Role{} },
	"rbac.authorization.k8s.io/v1/RoleBinding":        func() any { return &rbacv1.RoleBinding{} },
	"policy/v1/PodDisruptionBudget":                   func() any { return &policyv1.PodDisruptionBudget{} },
	"install.istio.io/v1alpha1/IstioOperator":         func() any { return &istioOperator{} },
	"kustomize.config.k8s.io/v1beta1/Kustomization":   func() any { return &kustomization{} },
}

// istioOperator is the part of Istio's IstioOperator resource that
// deploy/istio uses (a CRD, so not in k8s.io/api); unknown fields are
// errors here as everywhere.
type istioOperator struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Profile    string `json:"profile"`
		MeshConfig struct {
			TrustDomain string `json:"trustDomain"`
		} `json:"meshConfig"`
		Values struct {
			SidecarInjectorWebhook struct {
				Templates map[string]string `json:"templates"`
			} `json:"sidecarInjectorWebhook"`
		} `json:"values"`
	} `json:"spec"`
}

// kustomization is the part of kustomize's Kustomization that deploy/
// uses.
type kustomization struct {
	metav1.TypeMeta `json:",inline"`
	Namespace       string   `json:"namespace,omitempty"`
	Resources       []string `json:"resources,omitempty"`
	Patches         []struct {
		Path string `json:"path"`
	} `json:"patches,omitempty"`
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
	} `json:"images,omitempty"`
	Labels []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors,omitempty"`
	} `json:"labels,omitempty"`
}

// patchFiles are the overlays' patch files.
var patchFiles = map[string]bool{
	"kubernetes/overlays/postgres/server-configmap.yaml":   true,
	"kubernetes/overlays/postgres/server-statefulset.yaml": true,
}

// notKustomized are manifests applied by other tools.
var notKustomized = map[string]bool{
	"istio/istio-operator.yaml": true, // istioctl install -f
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decodeStrict decodes YAML (one document) into a typed object chosen by
// its apiVersion and kind, failing on unknown fields and duplicate keys.
func decodeStrict(data []byte) (any, error) {
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, err
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(j, &tm); err != nil {
		return nil, err
	}
	newObj, ok := kinds[tm.APIVersion+"/"+tm.Kind]
	if !ok {
		return nil, fmt.Errorf("unknown kind %s/%s", tm.APIVersion, tm.Kind)
	}
	obj := newObj()
	return obj, strictJSON(j, obj)
}

func strictJSON(j []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data")
	}
	return nil
}

// manifest is one decoded document.
type manifest struct {
	file  string
	obj   any
	patch bool // a strategic-merge patch of an overlay: partial by design
}

func (m manifest) kindName() string {
	j, _ := json.Marshal(m.obj)
	var v struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	json.Unmarshal(j, &v)
	return v.Kind + "/" + v.Metadata.Name
}

// loadManifests decodes every YAML file under dir.
func loadManifests(t *testing.T, dir string) []manifest {
	t.Helper()
	var out []manifest
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for i, doc := range docSep.Split(string(data), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			obj, err := decodeStrict([]byte(doc))
			if err != nil {
				t.Errorf("%s (document %d): %v", p, i+1, err)
				continue
			}
			out = append(out, manifest{file: p, obj: obj, patch: patchFiles[filepath.ToSlash(p)]})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

func TestStrictDecodingCatchesMistakes(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		wantErr string
	}{
		{name: "typo in a field", doc: "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: x}\nspec:\n  hostPid: true\n", wantErr: "unknown field"},
		{name: "misplaced field", doc: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\nspec: {}\n", wantErr: "unknown field"},
		{name: "duplicate key", doc: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b, a: c}\n", wantErr: "already set"},
		{name: "wrong type", doc: "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: x}\nspec: {replicas: two}\n", wantErr: "cannot unmarshal"},
		{name: "unknown kind", doc: "apiVersion: v1\nkind: Sekret\nmetadata: {name: x}\n", wantErr: "unknown kind"},
		{name: "fine", doc: "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: x}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeStrict([]byte(tt.doc))
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// podSpecs returns the pod templates of workload objects.
func podSpecs(ms []manifest) map[string]*corev1.PodSpec {
	out := make(map[string]*corev1.PodSpec)
	for _, m := range ms {
		switch o := m.obj.(type) {
		case *appsv1.StatefulSet:
			// Claims from volumeClaimTemplates are volumes of the pod.
			spec := o.Spec.Template.Spec
			spec.Volumes = slices.Clone(spec.Volumes)
			for _, pvc := range o.Spec.VolumeClaimTemplates {
				spec.Volumes = append(spec.Volumes, corev1.Volume{Name: pvc.Name, VolumeSource: corev1.VolumeSource{
					PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: pvc.Name},
				}})
			}
			out["StatefulSet/"+o.Name] = &spec
		case *appsv1.DaemonSet:
			out["DaemonSet/"+o.Name] = &o.Spec.Template.Spec
		case *appsv1.Deployment:
			out["Deployment/"+o.Name] = &o.Spec.Template.Spec
		}
	}
	return out
}

// operatorCreated are objects the manifests reference that the operator
// creates (docs/operations.md says how).
var operatorCreated = map[string]bool{
	"Secret/hallmark-postgres": true, // PostgreSQL password and CA
}

func TestKubernetesManifests(t *testing.T) {
	ms := append(loadManifests(t, "kubernetes"), loadManifests(t, "istio")...)
	if len(ms) < 15 {
		t.Fatalf("only %d manifests decoded", len(ms))
	}
	defined := make(map[string]bool)
	for _, m := range ms {
		defined[m.kindName()] = true
	}

	var servers, agents int
	for _, m := range ms {
		cm, ok := m.obj.(*corev1.ConfigMap)
		if !ok {
			continue
		}
		for key, val := range cm.Data {
			name := m.file + ":" + key
			switch key {
			case "server.hcl":
				f := parseServerHCL(t, name, []byte(val))
				checkK8sServerConfig(t, name, f, ms)
				servers++
			case "agent.hcl":
				f := parseAgentHCL(t, name, []byte(val))
				checkK8sAgentConfig(t, name, f, ms)
				agents++
			default:
				t.Errorf("%s: ConfigMap key %q: no parser knows it", m.file, key)
			}
		}
	}
	if servers != 2 || agents != 1 {
		t.Errorf("parsed %d server and %d agent configurations, want 2 and 1", servers, agents)
	}

	for _, m := range ms {
		for name, spec := range podSpecs([]manifest{m}) {
			checkPodSpec(t, m.file+": "+name, spec, m.patch, defined)
		}
	}
	checkRBAC(t, ms, defined)
}

// checkPodSpec checks references inside a pod spec: volumes, config maps,
// secrets, service accounts, probe ports.
func checkPodSpec(t *testing.T, name string, spec *corev1.PodSpec, patch bool, defined map[string]bool) {
	t.Helper()
	vols := make(map[string]corev1.Volume)
	for _, v := range spec.Volumes {
		vols[v.Name] = v
		switch {
		case v.ConfigMap != nil && !defined["ConfigMap/"+v.ConfigMap.Name] && !operatorCreated["ConfigMap/"+v.ConfigMap.Name]:
			t.Errorf("%s: volume %s: ConfigMap %s is defined nowhere", name, v.Name, v.ConfigMap.Name)
		case v.Secret != nil && !operatorCreated["Secret/"+v.Secret.SecretName]:
			t.Errorf("%s: volume %s: Secret %s is not documented", name, v.Name, v.Secret.SecretName)
		}
	}
	if sa := spec.ServiceAccountName; sa != "" && !defined["ServiceAccount/"+sa] {
		t.Errorf("%s: ServiceAccount %s is defined nowhere", name, sa)
	}
	for _, c := range spec.Containers {
		if c.Image == "" && !patch {
			t.Errorf("%s/%s: no image", name, c.Name)
		}
		ports := make(map[string]bool)
		for _, p := range c.Ports {
			ports[p.Name] = true
		}
		for _, vm := range c.VolumeMounts {
			if _, ok := vols[vm.Name]; !ok {
				t.Errorf("%s/%s: mount of undefined volume %s", name, c.Name, vm.Name)
			}
		}
		for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
			if p != nil && p.HTTPGet != nil && p.HTTPGet.Port.StrVal != "" && !ports[p.HTTPGet.Port.StrVal] {
				t.Errorf("%s/%s: probe on undefined port %q", name, c.Name, p.HTTPGet.Port.StrVal)
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && !operatorCreated["Secret/"+e.ValueFrom.SecretKeyRef.Name] {
				t.Errorf("%s/%s: env %s: Secret %s is not documented", name, c.Name, e.Name, e.ValueFrom.SecretKeyRef.Name)
			}
		}
	}
}

// find returns the object of type T named name.
func find[T any](ms []manifest, kindName string) T {
	var zero T
	for _, m := range ms {
		if o, ok := m.obj.(T); ok && !m.patch && m.kindName() == kindName {
			return o
		}
	}
	return zero
}

// container returns the container named name, with its mounts resolved
// to volumes.
func container(t *testing.T, spec *corev1.PodSpec, name string) (*corev1.Container, map[string]corev1.Volume) {
	t.Helper()
	vols := make(map[string]corev1.Volume)
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			return &spec.Containers[i], vols
		}
	}
	t.Fatalf("container %s missing", name)
	return nil, nil
}

// mountFor returns the mount containing p and its volume.
func mountFor(c *corev1.Container, vols map[string]corev1.Volume, p string) (corev1.VolumeMount, corev1.Volume, bool) {
	for _, vm := range c.VolumeMounts {
		if p == vm.MountPath || strings.HasPrefix(p, strings.TrimSuffix(vm.MountPath, "/")+"/") {
			return vm, vols[vm.Name], true
		}
	}
	return corev1.VolumeMount{}, corev1.Volume{}, false
}

func probePort(t *testing.T, name string, c *corev1.Container, listen string) {
	t.Helper()
	_, port, _ := strings.Cut(listen, ":")
	for _, p := range c.Ports {
		if p.Name == "metrics" && fmt.Sprint(p.ContainerPort) == port {
			return
		}
	}
	t.Errorf("%s: telemetry listens on %s, but no container port \"metrics\" with that number", name, listen)
}

func checkK8sServerConfig(t *testing.T, name string, f serverFile, ms []manifest) {
	t.Helper()
	sts := find[*appsv1.StatefulSet](ms, "StatefulSet/hallmark-server")
	if sts == nil {
		t.Fatal("StatefulSet/hallmark-server missing")
	}
	c, vols := container(t, podSpecs([]manifest{{obj: sts}})["StatefulSet/hallmark-server"], "hallmark-server")
	if f.TelemetryCfg == nil || f.AuditCfg == nil {
		t.Fatalf("%s: telemetry and audit blocks are required on Kubernetes", name)
	}
	probePort(t, name, c, f.TelemetryCfg.ListenAddress)
	if !f.AuditCfg.Stdout {
		t.Errorf("%s: the audit log should go to stdout on Kubernetes", name)
	}
	if f.BindPort != 8081 {
		t.Errorf("%s: bind_port %d, the Service says 8081", name, f.BindPort)
	}
	if vm, v, ok := mountFor(c, vols, f.DataDir); !ok || vm.ReadOnly || v.PersistentVolumeClaim == nil {
		t.Errorf("%s: data_dir %s is not on a writable persistent volume", name, f.DataDir)
	}
	if vm, v, ok := mountFor(c, vols, f.SocketPath); !ok || vm.ReadOnly {
		t.Errorf("%s: socket_path %s is not on a writable volume", name, f.SocketPath)
	} else {
		// The volume's root belongs to root and is world-writable; the
		// server (uid 65532) refuses a socket directory it does not own,
		// so it creates its own (0700) below the mount. A tmpfs emptyDir's
		// root is 1777 (sticky, like /tmp), which the server accepts above
		// its socket; a disk emptyDir's is 0777 without the sticky bit,
		// which it refuses.
		if path.Dir(f.SocketPath) == path.Clean(vm.MountPath) {
			t.Errorf("%s: socket_path %s lies directly in the volume mounted at %s; put it in a subdirectory the server creates",
				name, f.SocketPath, vm.MountPath)
		}
		if v.EmptyDir != nil && v.EmptyDir.Medium != corev1.StorageMediumMemory {
			t.Errorf("%s: the admin socket's emptyDir must be medium Memory (a sticky tmpfs root)", name)
		}
	}
	found := false
	for _, b := range f.NodeAttestors {
		if b.Kind != k8spsat.Type {
			continue
		}
		var psat k8spsat.ServerConfig
		if err := hclconf.DecodeBlock(b, &psat); err != nil {
			t.Fatal(err)
		}
		for _, cl := range psat.Clusters {
			found = found || slices.Contains(cl.ServiceAccountAllowList, "hallmark:hallmark-agent")
		}
	}
	if !found {
		t.Errorf("%s: the k8s_psat allow-list does not name the agent's service account hallmark:hallmark-agent", name)
	}
}

func checkK8sAgentConfig(t *testing.T, name string, f agentFile, ms []manifest) {
	t.Helper()
	ds := find[*appsv1.DaemonSet](ms, "DaemonSet/hallmark-agent")
	if ds == nil {
		t.Fatal("DaemonSet/hallmark-agent missing")
	}
	spec := &ds.Spec.Template.Spec
	if !spec.HostPID {
		t.Errorf("DaemonSet/hallmark-agent: hostPID must be true (callers' PIDs)")
	}
	c, vols := container(t, spec, "hallmark-agent")
	if f.TelemetryCfg == nil {
		t.Fatalf("%s: telemetry block required on Kubernetes", name)
	}
	probePort(t, name, c, f.TelemetryCfg.ListenAddress)

	// The Workload API socket, and the SDS-only socket for Istio: each in
	// a writable hostPath directory mounted at the same path, so that
	// workloads can mount the host directory.
	for _, sock := range []string{f.SocketPath, f.SDS.ExtraSocketPath} {
		if vm, v, ok := mountFor(c, vols, sock); !ok || vm.ReadOnly || v.HostPath == nil || v.HostPath.Path != vm.MountPath || vm.MountPath != path.Dir(sock) {
			t.Errorf("%s: socket %q is not in a writable hostPath directory mounted at the same path", name, sock)
		}
	}
	if path.Base(f.SDS.ExtraSocketPath) != "socket" {
		t.Errorf("%s: sds socket_path %q: Istio expects a file named socket", name, f.SDS.ExtraSocketPath)
	}
	if _, v, ok := mountFor(c, vols, f.TrustBundlePath); !ok || v.ConfigMap == nil {
		t.Errorf("%s: trust_bundle_path %s is not mounted from a ConfigMap", name, f.TrustBundlePath)
	}
	if vm, _, ok := mountFor(c, vols, f.DataDir); !ok || vm.ReadOnly {
		t.Errorf("%s: data_dir %s is not on a writable volume", name, f.DataDir)
	}

	// The projected token the k8s_psat collector reads.
	tokenPath := f.PSAT.TokenPath
	if tokenPath == "" {
		tokenPath = k8spsat.DefaultAgentTokenPath
	}
	vm, v, ok := mountFor(c, vols, tokenPath)
	if !ok || v.Projected == nil {
		t.Fatalf("%s: token %s is not on a projected volume", name, tokenPath)
	}
	var tok *corev1.ServiceAccountTokenProjection
	for _, s := range v.Projected.Sources {
		if s.ServiceAccountToken != nil && path.Join(vm.MountPath, s.ServiceAccountToken.Path) == tokenPath {
			tok = s.ServiceAccountToken
		}
	}
	if aud := k8spsat.DefaultAudience(f.TrustDomain); tok == nil || tok.Audience != aud {
		t.Errorf("%s: no projected token at %s with audience %q (the server's default for trust domain %q)", name, tokenPath, aud, f.TrustDomain)
	}

	// Istio's template mounts the same host directory.
	io := find[*istioOperator](ms, "IstioOperator/hallmark")
	if io == nil {
		t.Fatal("IstioOperator/hallmark missing")
	}
	tmpl, ok := io.Spec.Values.SidecarInjectorWebhook.Templates["hallmark"]
	if !ok {
		t.Fatal("IstioOperator: template hallmark missing")
	}
	pod, err := decodeIstioTemplate(tmpl)
	if err != nil {
		t.Fatalf("IstioOperator template hallmark: %v", err)
	}
	proxy, pvols := container(t, &pod.Spec, "istio-proxy")
	pm, pv, ok := mountFor(proxy, pvols, "/run/secrets/workload-spiffe-uds/socket")
	if !ok || pv.HostPath == nil || pv.HostPath.Path != path.Dir(f.SDS.ExtraSocketPath) || pm.Name != "workload-socket" {
		t.Errorf("IstioOperator: istio-proxy does not mount %s at /run/secrets/workload-spiffe-uds", path.Dir(f.SDS.ExtraSocketPath))
	}
	if io.Spec.MeshConfig.TrustDomain != f.TrustDomain.Name() {
		t.Errorf("Istio trust domain %q, agent %q", io.Spec.MeshConfig.TrustDomain, f.TrustDomain.Name())
	}
}

// decodeIstioTemplate decodes an injection template (a Pod fragment)
// strictly.
func decodeIstioTemplate(tmpl string) (*corev1.Pod, error) {
	j, err := yaml.YAMLToJSONStrict([]byte(tmpl))
	if err != nil {
		return nil, err
	}
	var pod corev1.Pod
	return &pod, strictJSON(j, &pod)
}

func checkRBAC(t *testing.T, ms []manifest, defined map[string]bool) {
	t.Helper()
	grants := func(role, group, resource, verb string) bool {
		cr := find[*rbacv1.ClusterRole](ms, "ClusterRole/"+role)
		if cr == nil {
			return false
		}
		for _, r := range cr.Rules {
			if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) {
				return true
			}
		}
		return false
	}
	if !grants("hallmark-server", "authentication.k8s.io", "tokenreviews", "create") {
		t.Error("ClusterRole/hallmark-server does not allow creating TokenReviews")
	}
	if r := find[*rbacv1.Role](ms, "Role/hallmark-server-bundle"); r == nil || len(r.Rules) != 1 ||
		!slices.Equal(r.Rules[0].ResourceNames, []string{"hallmark-bundle"}) || !slices.Equal(r.Rules[0].Verbs, []string{"get", "patch"}) {
		t.Error("Role/hallmark-server-bundle must allow get and patch of ConfigMap hallmark-bundle only")
	}
	if !grants("hallmark-agent", "", "nodes/proxy", "get") {
		t.Error("ClusterRole/hallmark-agent does not allow get nodes/proxy (kubelet /pods)")
	}
	for _, m := range ms {
		b, ok := m.obj.(*rbacv1.ClusterRoleBinding)
		if !ok {
			continue
		}
		if !defined[b.RoleRef.Kind+"/"+b.RoleRef.Name] {
			t.Errorf("%s: role %s/%s is defined nowhere", m.file, b.RoleRef.Kind, b.RoleRef.Name)
		}
		for _, s := range b.Subjects {
			if s.Kind == "ServiceAccount" && !defined["ServiceAccount/"+s.Name] {
				t.Errorf("%s: ServiceAccount %s is defined nowhere", m.file, s.Name)
			}
		}
	}
}

// TestKustomizations checks every kustomization.yaml: its resources and
// patches exist, every manifest in its directory is used, each patch
// targets an object of the build, and each image override names an image
// in use.
func TestKustomizations(t *testing.T) {
	var dirs []string
	for _, root := range []string{"kubernetes", "istio"} {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Name() == "kustomization.yaml" {
				dirs = append(dirs, filepath.Dir(p))
			}
			return err
		})
	}
	if len(dirs) != 3 {
		t.Fatalf("found kustomizations in %v, want base, overlays/postgres and istio", dirs)
	}
	for _, dir := range dirs {
		t.Run(dir, func(t *testing.T) {
			objs := build(t, dir)
			if len(objs) == 0 {
				t.Fatal("builds nothing")
			}
		})
	}
}

// build resolves a kustomization's resources recursively (not applying
// patches) and checks its references; it returns the objects by
// kind/name.
func build(t *testing.T, dir string) map[string]manifest {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := decodeStrict(data)
	if err != nil {
		t.Fatalf("%s/kustomization.yaml: %v", dir, err)
	}
	k := obj.(*kustomization)
	objs := make(map[string]manifest)
	used := map[string]bool{"kustomization.yaml": true}
	for _, r := range k.Resources {
		p := filepath.Join(dir, r)
		fi, err := os.Stat(p)
		switch {
		case err != nil:
			t.Errorf("%s: resource %s: %v", dir, r, err)
		case fi.IsDir():
			for kn, m := range build(t, p) {
				objs[kn] = m
			}
		default:
			used[r] = true
			for _, m := range loadManifests(t, p) {
				objs[m.kindName()] = m
			}
		}
	}
	for _, pt := range k.Patches {
		used[pt.Path] = true
		if !patchFiles[filepath.ToSlash(filepath.Join(dir, pt.Path))] {
			t.Errorf("%s: patch %s is missing from patchFiles", dir, pt.Path)
		}
		ms := loadManifests(t, filepath.Join(dir, pt.Path))
		for _, m := range ms {
			if _, ok := objs[m.kindName()]; !ok {
				t.Errorf("%s: patch %s targets %s, which the build does not contain", dir, pt.Path, m.kindName())
			}
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".yaml") && !used[e.Name()] && !notKustomized[filepath.ToSlash(filepath.Join(dir, e.Name()))] {
			t.Errorf("%s/%s is not referenced by the kustomization", dir, e.Name())
		}
	}
	var images []string
	for _, m := range objs {
		for _, spec := range podSpecs([]manifest{m}) {
			for _, c := range spec.Containers {
				images = append(images, c.Image)
			}
		}
	}
	for _, img := range k.Images {
		if !slices.Contains(images, img.Name) {
			t.Errorf("%s: image override %s matches no container (images: %v)", dir, img.Name, images)
		}
	}
	return objs
}
