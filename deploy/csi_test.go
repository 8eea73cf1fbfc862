package deploy_test

import (
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"

	"github.com/hallmarkid/hallmark/internal/uds"
)

// Where Istio's pilot-agent looks for an SDS socket, and the name the
// socket must have there.
const (
	istioSocketDir  = "/run/secrets/workload-spiffe-uds"
	istioSocketName = "socket"
	kubeletPlugins  = "/var/lib/kubelet/plugins"
	kubeletPods     = "/var/lib/kubelet/pods"
)

// checkAgentSockets checks the agent's socket layout: every socket it
// serves to pods (the Workload API, and the SDS-only one when configured)
// is named socket and alone in a host directory of its own, which the
// agent (uid 0) owns and nobody else may write to (internal/uds refuses
// anything else), mounted at the same path so that the CSI driver can
// name it.
func checkAgentSockets(t *testing.T, name string, f agentFile, spec *corev1.PodSpec, c *corev1.Container, vols map[string]corev1.Volume) {
	t.Helper()
	socks := []string{f.SocketPath}
	if f.SDS.ExtraSocketPath != "" {
		socks = append(socks, f.SDS.ExtraSocketPath)
	}
	dirs := make(map[string]bool)
	for _, sock := range socks {
		vm, v, ok := mountFor(c, vols, sock)
		if !ok || vm.ReadOnly || v.HostPath == nil || v.HostPath.Path != vm.MountPath || vm.MountPath != path.Dir(sock) {
			t.Errorf("%s: socket %q is not in a writable hostPath directory mounted at the same path", name, sock)
			continue
		}
		// kubelet creates a DirectoryOrCreate hostPath as root, 0755: the
		// agent's own and not writable by group or others.
		if v.HostPath.Type == nil || *v.HostPath.Type != corev1.HostPathDirectoryOrCreate {
			t.Errorf("%s: socket directory %s: hostPath type must be DirectoryOrCreate (root, 0755)", name, v.HostPath.Path)
		}
		if path.Base(sock) != istioSocketName {
			t.Errorf("%s: socket %q: CSI consumers and Istio expect a file named %s", name, sock, istioSocketName)
		}
		if dirs[path.Dir(sock)] {
			t.Errorf("%s: socket %q shares its directory with another socket; a CSI driver instance mounts a whole directory", name, sock)
		}
		dirs[path.Dir(sock)] = true
	}
	if f.AdminSocketPath != "" && dirs[path.Dir(f.AdminSocketPath)] {
		t.Errorf("%s: admin_socket_path %s lies in a directory mounted into workload pods", name, f.AdminSocketPath)
	}
	uid := c.SecurityContext.RunAsUser
	if uid == nil && spec.SecurityContext != nil {
		uid = spec.SecurityContext.RunAsUser
	}
	if uid == nil || *uid != 0 {
		t.Errorf("%s: the agent must run as uid 0, the owner of the root-created socket directories", name)
	}
}

// flagValue returns the value after flag in args ("-flag v" or
// "-flag=v", one or two dashes).
func flagValue(args []string, flag string) string {
	for i, a := range args {
		a = "-" + strings.TrimLeft(a, "-")
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

// checkCSI checks that a SPIFFE CSI driver instance serves each of
// socketDirs (host paths), read-only, under a plugin name of its own that
// a CSIDriver object declares and a node-driver-registrar registers with
// the kubelet. It returns the plugin name per directory.
func checkCSI(t *testing.T, ms []manifest, socketDirs []string) map[string]string {
	t.Helper()
	plugins := make(map[string]string)
	served := make(map[string]bool)
	for _, m := range ms {
		ds, ok := m.obj.(*appsv1.DaemonSet)
		if !ok || m.patch {
			continue
		}
		spec := &ds.Spec.Template.Spec
		for i := range spec.Containers {
			c := &spec.Containers[i]
			plugin := flagValue(c.Args, "-plugin-name")
			if plugin == "" {
				continue
			}
			name := "DaemonSet/" + ds.Name + "/" + c.Name
			_, vols := container(t, spec, c.Name)
			if !strings.HasPrefix(c.Image, "ghcr.io/spiffe/spiffe-csi-driver:") {
				t.Errorf("%s: image %s, want the upstream ghcr.io/spiffe/spiffe-csi-driver", name, c.Image)
			}
			dir := flagValue(c.Args, "-workload-api-socket-dir")
			vm, v, ok := mountFor(c, vols, dir)
			if !ok || vm.MountPath != dir || v.HostPath == nil || !vm.ReadOnly {
				t.Errorf("%s: -workload-api-socket-dir %s is not a read-only hostPath mount", name, dir)
				continue
			}
			if !slices.Contains(socketDirs, v.HostPath.Path) {
				t.Errorf("%s: serves %s, which is no agent socket directory (%v)", name, v.HostPath.Path, socketDirs)
			}
			if plugins[v.HostPath.Path] != "" {
				t.Errorf("%s: %s is served twice", name, v.HostPath.Path)
			}
			plugins[v.HostPath.Path] = plugin
			served[plugin] = true

			csiSock := flagValue(c.Args, "-csi-socket-path")
			sm, sv, ok := mountFor(c, vols, csiSock)
			if !ok || sv.HostPath == nil || sv.HostPath.Path != path.Join(kubeletPlugins, plugin) || sm.MountPath != path.Dir(csiSock) {
				t.Errorf("%s: -csi-socket-path %s is not in the host's %s", name, csiSock, path.Join(kubeletPlugins, plugin))
			}
			pm, pv, ok := mountFor(c, vols, kubeletPods)
			if !ok || pv.HostPath == nil || pv.HostPath.Path != kubeletPods || pm.MountPropagation == nil || *pm.MountPropagation != corev1.MountPropagationBidirectional {
				t.Errorf("%s: %s must be the host's, mounted with Bidirectional propagation", name, kubeletPods)
			}
			if e := envVar(c, "MY_NODE_NAME"); e == nil || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
				t.Errorf("%s: MY_NODE_NAME (the driver's node ID) must come from spec.nodeName", name)
			}
			// Its registrar: a node-driver-registrar in the same pod that
			// dials the same socket and registers the host path of this
			// plugin.
			registered := false
			for j := range spec.Containers {
				r := &spec.Containers[j]
				if !strings.Contains(r.Image, "csi-node-driver-registrar") || flagValue(r.Args, "-kubelet-registration-path") != path.Join(kubeletPlugins, plugin, "csi.sock") {
					continue
				}
				rm, _, ok := mountFor(r, vols, flagValue(r.Args, "-csi-address"))
				_, regv, regok := mountFor(r, vols, "/registration")
				registered = ok && rm.Name == sm.Name && regok && regv.HostPath != nil && regv.HostPath.Path == "/var/lib/kubelet/plugins_registry"
			}
			if !registered {
				t.Errorf("%s: no node-driver-registrar registers %s", name, path.Join(kubeletPlugins, plugin, "csi.sock"))
			}
		}
	}
	for _, m := range ms {
		d, ok := m.obj.(*storagev1.CSIDriver)
		if !ok {
			continue
		}
		if !served[d.Name] {
			t.Errorf("CSIDriver/%s: no driver container serves it", d.Name)
		}
		s := d.Spec
		if s.AttachRequired == nil || *s.AttachRequired || s.PodInfoOnMount == nil || !*s.PodInfoOnMount ||
			!slices.Equal(s.VolumeLifecycleModes, []storagev1.VolumeLifecycleMode{storagev1.VolumeLifecycleEphemeral}) {
			t.Errorf("CSIDriver/%s: want attachRequired false, podInfoOnMount true, Ephemeral volumes only", d.Name)
		}
		delete(served, d.Name)
	}
	for p := range served {
		t.Errorf("plugin %s: no CSIDriver object declares it", p)
	}
	for _, d := range socketDirs {
		if plugins[d] == "" {
			t.Errorf("agent socket directory %s: no CSI driver instance serves it", d)
		}
	}
	return plugins
}

// checkIstioTemplate checks an injection template named hallmark: it
// mounts, through the CSI driver instance that serves the agent's SDS-only
// socket directory, that directory read-only in istio-proxy where
// pilot-agent looks for the socket. It returns the template's volumes.
func checkIstioTemplate(t *testing.T, name, tmpl string, f agentFile, plugins map[string]string) []corev1.Volume {
	t.Helper()
	pod, err := decodeIstioTemplate(tmpl)
	if err != nil {
		t.Fatalf("%s: template hallmark: %v", name, err)
	}
	if f.SDS.ExtraSocketPath == "" {
		t.Fatalf("%s: the agent has no SDS-only socket (sds { socket_path })", name)
	}
	if path.Base(f.SDS.ExtraSocketPath) != istioSocketName {
		t.Errorf("%s: sds socket_path %q: Istio expects a file named %s", name, f.SDS.ExtraSocketPath, istioSocketName)
	}
	proxy, pvols := container(t, &pod.Spec, "istio-proxy")
	pm, pv, ok := mountFor(proxy, pvols, istioSocketDir+"/"+istioSocketName)
	want := plugins[path.Dir(f.SDS.ExtraSocketPath)]
	if !ok || pm.MountPath != istioSocketDir || !pm.ReadOnly || pm.Name != "workload-socket" || pv.CSI == nil || want == "" ||
		pv.CSI.Driver != want || pv.CSI.ReadOnly == nil || !*pv.CSI.ReadOnly {
		t.Errorf("%s: istio-proxy does not mount CSI driver %q (serving %s) read-only at %s as volume workload-socket",
			name, want, path.Dir(f.SDS.ExtraSocketPath), istioSocketDir)
	}
	return pod.Spec.Volumes
}

// restrictedViolations evaluates every pod template in a namespace
// labelled pod-security.kubernetes.io/enforce: restricted with the real
// Pod Security admission checks, the volumes of the hallmark injection
// template added where a pod asks for it (Istio's own injected containers
// are Istio's business: with its CNI they need no privilege). It returns
// the violations and how many pods it evaluated.
func restrictedViolations(ms []manifest, hallmarkVolumes []corev1.Volume) ([]string, int, error) {
	ev, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		return nil, 0, err
	}
	restricted := make(map[string]bool)
	for _, m := range ms {
		if ns, ok := m.obj.(*corev1.Namespace); ok && ns.Labels[api.EnforceLevelLabel] == string(api.LevelRestricted) {
			restricted[ns.Name] = true
		}
	}
	var bad []string
	n := 0
	for _, m := range ms {
		var tmpl *corev1.PodTemplateSpec
		switch o := m.obj.(type) {
		case *appsv1.Deployment:
			if restricted[o.Namespace] {
				tmpl = &o.Spec.Template
			}
		case *appsv1.DaemonSet:
			if restricted[o.Namespace] {
				tmpl = &o.Spec.Template
			}
		case *appsv1.StatefulSet:
			if restricted[o.Namespace] {
				tmpl = &o.Spec.Template
			}
		}
		if tmpl == nil {
			continue
		}
		spec := tmpl.Spec.DeepCopy()
		if slices.Contains(strings.Split(tmpl.Annotations["inject.istio.io/templates"], ","), "hallmark") {
			spec.Volumes = append(spec.Volumes, hallmarkVolumes...)
		}
		lv := api.LevelVersion{Level: api.LevelRestricted, Version: api.LatestVersion()}
		if r := policy.AggregateCheckResults(ev.EvaluatePod(lv, &tmpl.ObjectMeta, spec)); !r.Allowed {
			bad = append(bad, m.file+": "+m.kindName()+": "+r.ForbiddenReason()+": "+r.ForbiddenDetail())
		}
		n++
	}
	return bad, n, nil
}

// checkRestricted fails on any restrictedViolations and when fewer than
// min pods were evaluated.
func checkRestricted(t *testing.T, ms []manifest, hallmarkVolumes []corev1.Volume, min int) {
	t.Helper()
	bad, n, err := restrictedViolations(ms, hallmarkVolumes)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bad {
		t.Errorf("not allowed at Pod Security level restricted: %s", b)
	}
	if n < min {
		t.Errorf("evaluated %d pods in restricted namespaces, want at least %d", n, min)
	}
}

// TestRestrictedChecksRefuseHostPath: the check is the real one: the
// former hostPath template would not be admitted in the sample's
// namespace, the CSI one is.
func TestRestrictedChecksRefuseHostPath(t *testing.T) {
	ms := loadManifests(t, "istio/sample-app.yaml")
	tests := []struct {
		name    string
		vol     corev1.VolumeSource
		wantBad bool
	}{
		{name: "hostPath", vol: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/run/hallmark/istio"}}, wantBad: true},
		{name: "csi", vol: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: "sds.csi.hallmark.io"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad, n, err := restrictedViolations(ms, []corev1.Volume{{Name: "workload-socket", VolumeSource: tt.vol}})
			if err != nil {
				t.Fatal(err)
			}
			if n != 2 || (len(bad) == n) != tt.wantBad || (len(bad) == 0) == tt.wantBad {
				t.Fatalf("%d pods evaluated, violations %q; want 2 pods, all refused: %v", n, bad, tt.wantBad)
			}
			if tt.wantBad && !strings.Contains(bad[0], "hostPath") {
				t.Errorf("violation %q does not name hostPath", bad[0])
			}
		})
	}
}

// TestSocketDirectoriesPassHardening: the agent's socket paths of the
// base, in host directories made as kubelet makes a DirectoryOrCreate
// hostPath (mode 0755, owned by the agent's uid), pass the listener's
// hardening checks (internal/uds, as the agent calls it) and then hold
// only the socket and its lock file, which is all the CSI driver exposes
// to pods; a directory others may write to is refused.
func TestSocketDirectoriesPassHardening(t *testing.T) {
	var agent agentFile
	for _, m := range loadManifests(t, "kubernetes/base/agent-configmap.yaml") {
		agent = parseAgentHCL(t, m.file, []byte(m.obj.(*corev1.ConfigMap).Data["agent.hcl"]))
	}
	for _, sock := range []string{agent.SocketPath, agent.SDS.ExtraSocketPath} {
		t.Run(sock, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, path.Dir(sock))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, 0o755); err != nil { // whatever the umask
				t.Fatal(err)
			}
			l, err := uds.Listen(filepath.Join(root, sock), 0o755, 0o777)
			if err != nil {
				t.Fatalf("the agent would refuse its socket directory: %v", err)
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			if !slices.Equal(names, []string{istioSocketName, istioSocketName + ".lock"}) {
				t.Errorf("%s holds %q, want only the socket and its lock", dir, names)
			}
			l.Close()

			if err := os.Chmod(dir, 0o775); err != nil {
				t.Fatal(err)
			}
			if l, err := uds.Listen(filepath.Join(root, sock), 0o755, 0o777); err == nil {
				l.Close()
				t.Fatal("a group-writable socket directory was accepted")
			} else if !strings.Contains(err.Error(), "write access to group or others") {
				t.Fatalf("refused for another reason: %v", err)
			}
		})
	}
}
