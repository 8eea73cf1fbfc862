package deploy_test

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/hallmarkid/hallmark/attestors/k8spsat"
	"github.com/hallmarkid/hallmark/internal/hclconf"
)

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
	var agent agentFile
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
				agent = parseAgentHCL(t, name, []byte(val))
				checkK8sAgentConfig(t, name, agent, ms)
				agents++
			default:
				t.Errorf("%s: ConfigMap key %q: no parser knows it", m.file, key)
			}
		}
	}
	if servers != 2 || agents != 1 {
		t.Errorf("parsed %d server and %d agent configurations, want 2 and 1", servers, agents)
	}
	if agents != 1 {
		t.FailNow()
	}

	// Workload pods reach the agent's sockets through the CSI driver; Istio's
	// template mounts the SDS-only one; the sample and the gateway pass the
	// real restricted checks.
	plugins := checkCSI(t, ms, []string{path.Dir(agent.SocketPath), path.Dir(agent.SDS.ExtraSocketPath)})
	if plugins[path.Dir(agent.SocketPath)] != "csi.spiffe.io" {
		t.Errorf("the Workload API directory is served as %q, want csi.spiffe.io (what SPIFFE users' manifests name)", plugins[path.Dir(agent.SocketPath)])
	}
	io := find[*istioOperator](ms, "IstioOperator/hallmark")
	if io == nil {
		t.Fatal("IstioOperator/hallmark missing")
	}
	tmpl, ok := io.Spec.Values.SidecarInjectorWebhook.Templates["hallmark"]
	if !ok {
		t.Fatal("IstioOperator: template hallmark missing")
	}
	vols := checkIstioTemplate(t, "IstioOperator/hallmark", tmpl, agent, plugins)
	if io.Spec.MeshConfig.TrustDomain != agent.TrustDomain.Name() {
		t.Errorf("Istio trust domain %q, agent %q", io.Spec.MeshConfig.TrustDomain, agent.TrustDomain.Name())
	}
	if !io.Spec.Components.CNI.Enabled {
		t.Error("IstioOperator: without Istio's CNI, istio-init needs NET_ADMIN and meshed namespaces cannot be restricted")
	}
	checkRestricted(t, ms, vols, 3)

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

	checkAgentSockets(t, name, f, spec, c, vols)
	if e := envVar(c, "MY_NODE_NAME"); e == nil || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Errorf("%s: MY_NODE_NAME must come from spec.nodeName (the name the kubelet's serving certificate carries)", name)
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
		t.Fatalf("%s: no projected token at %s with audience %q (the server's default for trust domain %q)", name, tokenPath, aud, f.TrustDomain)
	}
	// A projected token is a bearer credential: the shortest lifetime the
	// API server allows.
	if tok.ExpirationSeconds == nil || *tok.ExpirationSeconds != 600 {
		t.Errorf("%s: projected token expirationSeconds %v, want 600", name, tok.ExpirationSeconds)
	}
}

// envVar returns the container's variable named name, or nil.
func envVar(c *corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
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
