package deploy_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
)

func init() {
	kinds["apiextensions.k8s.io/v1/CustomResourceDefinition"] = func() any { return &apiextv1.CustomResourceDefinition{} }
}

// The CRDs the registrar reads: SPIRE's, unchanged (issue 13).
var wantCRDs = []string{"clusterfederatedtrustdomains", "clusterspiffeids", "clusterstaticentries"}

// TestHelmChartCarriesTheCRDs: deploy/crds holds the registrar's CRD
// manifests; the chart carries byte-for-byte copies in its crds/ (Helm
// installs them before the templates and never deletes them), and nothing
// else there. Every one decodes strictly as a CustomResourceDefinition
// of spire.spiffe.io/v1alpha1.
func TestHelmChartCarriesTheCRDs(t *testing.T) {
	src, err := yamlFiles("crds")
	if errors.Is(err, fs.ErrNotExist) {
		t.Fatal("deploy/crds is missing: the registrar's CRD manifests live there, and helm/hallmark/crds holds copies of them")
	}
	if err != nil {
		t.Fatal(err)
	}
	copies, err := yamlFiles(filepath.Join(chartDir, "crds"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	for name, data := range src {
		c, ok := copies[name]
		switch {
		case !ok:
			t.Errorf("crds/%s has no copy in %s/crds (cp deploy/crds/%s deploy/%s/crds/)", name, chartDir, name, chartDir)
		case !bytes.Equal(c, data):
			t.Errorf("%s/crds/%s differs from crds/%s: copy it again", chartDir, name, name)
		}
	}
	for name := range copies {
		if _, ok := src[name]; !ok {
			t.Errorf("%s/crds/%s is not in deploy/crds", chartDir, name)
		}
	}
	var plurals []string
	for _, m := range loadManifests(t, "crds") {
		if _, ok := m.obj.(*kustomization); ok {
			continue
		}
		crd, ok := m.obj.(*apiextv1.CustomResourceDefinition)
		if !ok {
			t.Errorf("%s: %s is no CustomResourceDefinition", m.file, m.kindName())
			continue
		}
		served := slices.ContainsFunc(crd.Spec.Versions, func(v apiextv1.CustomResourceDefinitionVersion) bool {
			return v.Name == "v1alpha1" && v.Served
		})
		if crd.Spec.Group != "spire.spiffe.io" || !served || crd.Spec.Scope != apiextv1.ClusterScoped {
			t.Errorf("%s: %s: want cluster-scoped spire.spiffe.io, serving v1alpha1", m.file, crd.Name)
		}
		plurals = append(plurals, crd.Spec.Names.Plural)
	}
	slices.Sort(plurals)
	if !slices.Equal(plurals, wantCRDs) {
		t.Errorf("CRDs for %q, want %q", plurals, wantCRDs)
	}
	ch, err := loadChart()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(ch.CRDObjects()); n != len(copies) {
		t.Errorf("helm loads %d CRD objects from the chart, want %d", n, len(copies))
	}
}

// yamlFiles reads the YAML files of dir by name.
func yamlFiles(dir string) (map[string][]byte, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte)
	for _, e := range entries {
		// A kustomization.yaml beside the CRDs is for kubectl -k; Helm
		// would try to install it as a CRD.
		if e.IsDir() || e.Name() == "kustomization.yaml" || !(strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml")) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out[e.Name()] = data
	}
	return out, nil
}
