package deploy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
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
	"storage.k8s.io/v1/CSIDriver":                     func() any { return &storagev1.CSIDriver{} },
	"security.istio.io/v1/PeerAuthentication":         func() any { return &peerAuthentication{} },
	"networking.istio.io/v1/Gateway":                  func() any { return &istioGateway{} },
	"networking.istio.io/v1/VirtualService":           func() any { return &virtualService{} },
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
		Components struct {
			CNI struct {
				Enabled bool `json:"enabled"`
			} `json:"cni"`
			IngressGateways []struct {
				Name    string `json:"name"`
				Enabled bool   `json:"enabled"`
			} `json:"ingressGateways"`
		} `json:"components"`
		Values struct {
			SidecarInjectorWebhook struct {
				Templates map[string]string `json:"templates"`
			} `json:"sidecarInjectorWebhook"`
		} `json:"values"`
	} `json:"spec"`
}

// peerAuthentication, istioGateway and virtualService are the parts of
// Istio's resources that deploy/istio uses.
type peerAuthentication struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		MTLS struct {
			Mode string `json:"mode"`
		} `json:"mtls"`
	} `json:"spec"`
}

type istioGateway struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector map[string]string `json:"selector"`
		Servers  []struct {
			Port struct {
				Number   int    `json:"number"`
				Name     string `json:"name"`
				Protocol string `json:"protocol"`
			} `json:"port"`
			Hosts []string `json:"hosts"`
		} `json:"servers"`
	} `json:"spec"`
}

type virtualService struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Hosts    []string `json:"hosts"`
		Gateways []string `json:"gateways"`
		HTTP     []struct {
			Route []struct {
				Destination struct {
					Host string `json:"host"`
					Port struct {
						Number int `json:"number"`
					} `json:"port"`
				} `json:"destination"`
			} `json:"route"`
		} `json:"http"`
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
