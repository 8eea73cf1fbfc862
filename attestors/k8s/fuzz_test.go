package k8s_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hallmarkid/hallmark/attestors/k8s"
)

func FuzzParseCgroupFile(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.txt"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, "")
	}
	for _, s := range []string{
		"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/cri-containerd-" + hex64 + ".scope\n",
		"0::/../../kubepods-pod" + uidU + ".slice/crio-" + hex64 + ".scope",
		"0::/../" + hex64,
		"0::/system.slice/docker-" + otherHex + ".scope/kubepods/pod" + uid + "/" + hex64,
		"1:a:b:/c\n0::/\n",
		"0::/kubepods/pod" + uid + "/" + hex64 + "\n0::/",
	} {
		f.Add([]byte(s), "")
		f.Add([]byte(s), "/kubelet.slice")
	}
	f.Fuzz(func(t *testing.T, data []byte, root string) {
		c, found, err := k8s.ParseCgroupFile(data, root)
		if err != nil {
			if found || c != (k8s.Container{}) {
				t.Fatalf("error with a result: %+v %v", c, found)
			}
			return
		}
		if !found {
			return
		}
		// Whatever is found came from the file and is well formed.
		if len(c.ID) != 64 || strings.Trim(c.ID, "0123456789abcdef") != "" {
			t.Fatalf("bad container ID %q", c.ID)
		}
		if !strings.Contains(string(data), c.ID) {
			t.Fatalf("container ID %q not in input", c.ID)
		}
		if c.PodUID != "" && !strings.Contains(strings.ReplaceAll(string(data), "_", "-"), c.PodUID) {
			t.Fatalf("pod UID %q not in input", c.PodUID)
		}
		if strings.ContainsAny(c.PodUID, "_/:") {
			t.Fatalf("bad pod UID %q", c.PodUID)
		}
	})
}

func FuzzParsePodList(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, cidBlog)
		f.Add(b, cidCRIO)
	}
	f.Add([]byte(`{"items":[{"metadata":{"uid":"u","labels":{"a\u0000":"b"}},"status":{"containerStatuses":[{"containerID":"x://`+hex64+`"}]}}]}`), hex64)
	f.Add([]byte(`{"items":[{"status":{"containerStatuses":[{"containerID":"://"},{"containerID":"a://b"}]}}]}`), "b")
	f.Add([]byte(`{"items":null}`), "")
	f.Add([]byte(`[]`), "")
	f.Fuzz(func(t *testing.T, data []byte, cid string) {
		// Whatever the real corev1 types decode, the attestor's own types
		// decode to the same selectors.
		checkAgainstCoreV1(t, data)
		idx, err := k8s.ParsePodList(data)
		if err != nil {
			return
		}
		_, vs, ok := idx.Lookup(cid)
		if !ok {
			return
		}
		for i, v := range vs {
			if !strings.HasPrefix(v, "") || strings.ContainsAny(v, "\x00\n\r") {
				t.Fatalf("bad selector value %q", v)
			}
			if i > 0 && vs[i-1] >= v {
				t.Fatalf("selector values not sorted and unique: %q", vs)
			}
		}
	})
}
