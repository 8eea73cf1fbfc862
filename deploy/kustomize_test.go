package deploy_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
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
