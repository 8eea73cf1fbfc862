package k8s_test

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/hallmarkid/hallmark/attestors/k8s"
	"github.com/hallmarkid/hallmark/registration"
)

// The attestor decodes /pods into its own small types; these tests decode
// the same bytes with the real k8s.io/api/core/v1 types and compute the
// selectors from those, as the attestor did when it used corev1 itself.

// refSelectors are the selector values of st in p, computed from corev1.
func refSelectors(p *corev1.Pod, st *corev1.ContainerStatus) []string {
	v := []string{"ns:" + p.Namespace, "sa:" + p.Spec.ServiceAccountName, "pod-uid:" + string(p.UID),
		"pod-name:" + p.Name, "node-name:" + p.Spec.NodeName}
	for k, val := range p.Labels {
		v = append(v, "pod-label:"+k+":"+val)
	}
	for _, o := range p.OwnerReferences {
		v = append(v, "pod-owner:"+o.Kind+":"+o.Name, "pod-owner-uid:"+o.Kind+":"+string(o.UID))
	}
	for _, c := range p.Status.ContainerStatuses {
		v = append(v, "pod-image:"+c.Image, "pod-image:"+c.ImageID)
	}
	for _, c := range p.Status.InitContainerStatuses {
		v = append(v, "pod-init-image:"+c.Image, "pod-init-image:"+c.ImageID)
	}
	v = append(v, "pod-image-count:"+strconv.Itoa(len(p.Status.ContainerStatuses)),
		"pod-init-image-count:"+strconv.Itoa(len(p.Status.InitContainerStatuses)),
		"container-name:"+st.Name, "container-image:"+st.Image, "container-image:"+st.ImageID)
	out := v[:0]
	for _, s := range v {
		if s == "" || s[len(s)-1] == ':' && !strings.HasPrefix(s, "pod-label:") {
			continue
		}
		if (registration.Selector{Type: k8s.SelectorType, Value: s}).Validate() != nil {
			continue
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// checkAgainstCoreV1 requires ParsePodList(data) to agree with corev1 on
// every container of every pod. It reports false when corev1 rejects data.
func checkAgainstCoreV1(t *testing.T, data []byte) bool {
	t.Helper()
	var list corev1.PodList
	if err := json.Unmarshal(data, &list); err != nil {
		return false
	}
	idx, err := k8s.ParsePodList(data)
	if err != nil {
		t.Fatalf("corev1 decodes the pod list, ParsePodList does not: %v", err)
	}
	// Container IDs listed in more than one pod, or twice with different
	// values, are not comparable one by one.
	owners := map[string]map[string]bool{}
	for i := range list.Items {
		p := &list.Items[i]
		for _, g := range [][]corev1.ContainerStatus{p.Status.ContainerStatuses, p.Status.InitContainerStatuses, p.Status.EphemeralContainerStatuses} {
			for j := range g {
				_, id, ok := strings.Cut(g[j].ContainerID, "://")
				if !ok || id == "" {
					continue
				}
				if owners[id] == nil {
					owners[id] = map[string]bool{}
				}
				owners[id][string(p.UID)+"\x00"+strings.Join(refSelectors(p, &g[j]), "\x00")] = true
			}
		}
	}
	for i := range list.Items {
		p := &list.Items[i]
		for _, g := range [][]corev1.ContainerStatus{p.Status.ContainerStatuses, p.Status.InitContainerStatuses, p.Status.EphemeralContainerStatuses} {
			for j := range g {
				_, id, ok := strings.Cut(g[j].ContainerID, "://")
				if !ok || id == "" {
					continue
				}
				podUID, got, found := idx.Lookup(id)
				if len(owners[id]) > 1 {
					continue
				}
				if !found {
					t.Fatalf("container %q of pod %q: not found", id, p.UID)
				}
				if podUID != string(p.UID) {
					t.Fatalf("container %q: pod %q, corev1 says %q", id, podUID, p.UID)
				}
				if want := refSelectors(p, &g[j]); !slices.Equal(got, want) {
					t.Fatalf("container %q:\n got %q\nwant %q", id, got, want)
				}
			}
		}
	}
	return true
}

func TestParsePodListMatchesCoreV1(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data := []byte(fixture(t, filepath.Base(f)))
			if !checkAgainstCoreV1(t, data) {
				t.Fatal("corev1 rejects the fixture")
			}
			// And the same list as corev1 writes it.
			var list corev1.PodList
			_ = json.Unmarshal(data, &list)
			out, err := json.Marshal(&list)
			if err != nil {
				t.Fatal(err)
			}
			checkAgainstCoreV1(t, out)
		})
	}
}

func TestParsePodListEphemeralContainer(t *testing.T) {
	pod := corev1.Pod{}
	pod.Name, pod.Namespace, pod.UID = "p", "ns", "u1"
	pod.Spec.ServiceAccountName, pod.Spec.NodeName = "sa", "n"
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "main", Image: "img:1", ImageID: "img@sha256:01", ContainerID: "containerd://" + hex64}}
	pod.Status.EphemeralContainerStatuses = []corev1.ContainerStatus{{Name: "debug", Image: "busybox", ImageID: "busybox@sha256:02", ContainerID: "containerd://" + otherHex}}
	data, err := json.Marshal(corev1.PodList{Items: []corev1.Pod{pod}})
	if err != nil {
		t.Fatal(err)
	}
	if !checkAgainstCoreV1(t, data) {
		t.Fatal("corev1 rejects its own output")
	}
	idx, _ := k8s.ParsePodList(data)
	_, got, ok := idx.Lookup(otherHex)
	if !ok || !slices.Contains(got, "container-name:debug") || slices.Contains(got, "pod-image:busybox") {
		t.Fatalf("ephemeral container: %q %v", got, ok)
	}
}
