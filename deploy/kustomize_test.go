package deploy_test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

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

// immutableFields returns the JSON of the fields of obj that the API
// server refuses to change on update, by name; unset fields are left out
// (a patch that does not set them leaves them alone).
func immutableFields(obj any) map[string]string {
	out := make(map[string]string)
	add := func(name string, v any, set bool) {
		if set {
			j, _ := json.Marshal(v)
			out[name] = string(j)
		}
	}
	switch o := obj.(type) {
	case *appsv1.StatefulSet:
		add("spec.selector", o.Spec.Selector, o.Spec.Selector != nil)
		add("spec.serviceName", o.Spec.ServiceName, o.Spec.ServiceName != "")
		add("spec.volumeClaimTemplates", o.Spec.VolumeClaimTemplates, o.Spec.VolumeClaimTemplates != nil)
		add("spec.podManagementPolicy", o.Spec.PodManagementPolicy, o.Spec.PodManagementPolicy != "")
	case *appsv1.DaemonSet:
		add("spec.selector", o.Spec.Selector, o.Spec.Selector != nil)
	case *appsv1.Deployment:
		add("spec.selector", o.Spec.Selector, o.Spec.Selector != nil)
	case *corev1.Service:
		add("spec.clusterIP", o.Spec.ClusterIP, o.Spec.ClusterIP != "")
	case *policyv1.PodDisruptionBudget:
		// Mutable since policy/v1; nothing to compare.
	}
	return out
}

// immutableChanges lists the immutable fields that applying after over a
// running before would change: every field after sets must be before's;
// with full, fields before sets must also be set alike in after (two
// complete renders rather than a patch).
func immutableChanges(before, after any, full bool) []string {
	b, a := immutableFields(before), immutableFields(after)
	var out []string
	for k, v := range a {
		if b[k] != v {
			out = append(out, fmt.Sprintf("%s: %s -> %s", k, orUnset(b[k]), v))
		}
	}
	if full {
		for k, v := range b {
			if _, ok := a[k]; !ok {
				out = append(out, fmt.Sprintf("%s: %s -> unset", k, v))
			}
		}
	}
	slices.Sort(out)
	return out
}

func orUnset(s string) string {
	if s == "" {
		return "unset"
	}
	return s
}

// TestOverlaysKeepImmutableFields: `kubectl apply -k overlays/postgres`
// over a running base must not touch a field the API server refuses to
// update (StatefulSet selector, serviceName, volumeClaimTemplates,
// podManagementPolicy; workload selectors).
func TestOverlaysKeepImmutableFields(t *testing.T) {
	base := build(t, "kubernetes/base")
	var patched int
	for file := range patchFiles {
		for _, m := range loadManifests(t, file) {
			b, ok := base[m.kindName()]
			if !ok {
				t.Errorf("%s: %s is not in the base", file, m.kindName())
				continue
			}
			for _, c := range immutableChanges(b.obj, m.obj, false) {
				t.Errorf("%s: %s changes immutable %s", file, m.kindName(), c)
			}
			patched++
		}
	}
	if patched < 2 {
		t.Fatalf("compared %d patched objects, want the StatefulSet and the ConfigMap", patched)
	}
}

func TestImmutableChangesCatchesEdits(t *testing.T) {
	sts := func(edit func(*appsv1.StatefulSet)) *appsv1.StatefulSet {
		s := &appsv1.StatefulSet{}
		s.Spec.ServiceName = "hallmark-server-headless"
		s.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}
		s.Spec.VolumeClaimTemplates = []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "data"}}}
		edit(s)
		return s
	}
	tests := []struct {
		name  string
		patch *appsv1.StatefulSet
		full  bool
		want  string
	}{
		{name: "replicas only", patch: sts(func(s *appsv1.StatefulSet) { s.Spec.Replicas = new(int32(3)) })},
		{name: "podManagementPolicy", patch: sts(func(s *appsv1.StatefulSet) { s.Spec.PodManagementPolicy = appsv1.ParallelPodManagement }), want: "spec.podManagementPolicy: unset -> \"Parallel\""},
		{name: "serviceName", patch: sts(func(s *appsv1.StatefulSet) { s.Spec.ServiceName = "other" }), want: "spec.serviceName"},
		{name: "claim size", patch: sts(func(s *appsv1.StatefulSet) { s.Spec.VolumeClaimTemplates[0].Name = "db" }), want: "spec.volumeClaimTemplates"},
		{name: "selector", patch: sts(func(s *appsv1.StatefulSet) { s.Spec.Selector.MatchLabels["tier"] = "a" }), want: "spec.selector"},
		{name: "dropped in a full render", patch: sts(func(s *appsv1.StatefulSet) { s.Spec.ServiceName = "" }), full: true, want: "spec.serviceName: \"hallmark-server-headless\" -> unset"},
		{name: "unset in a patch", patch: sts(func(s *appsv1.StatefulSet) { s.Spec.ServiceName = "" })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := immutableChanges(sts(func(*appsv1.StatefulSet) {}), tt.patch, tt.full)
			if tt.want == "" && len(got) != 0 || tt.want != "" && (len(got) != 1 || !strings.Contains(got[0], tt.want)) {
				t.Fatalf("changes %q, want one naming %q", got, tt.want)
			}
		})
	}
}
