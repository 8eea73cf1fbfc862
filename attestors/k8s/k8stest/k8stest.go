// Package k8stest provides test helpers for the k8s workload attestor: a
// strict loopback HTTPS kubelet serving a PodList, and real kernel cgroups
// shaped like kubelet's that a test process can be moved into.
//
// It is for tests only and must not be imported by production code; it
// imports nothing of hallmark's.
package k8stest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Kubelet is a loopback HTTPS kubelet. It answers GET /pods with the
// bearer token only, and nothing else.
type Kubelet struct {
	URL   string // https://127.0.0.1:port
	CAPEM []byte // the serving certificate, which is its own CA
	Token string

	requests atomic.Int64
	inFlight atomic.Int64
	maxIn    atomic.Int64
	mu       sync.Mutex
	pods     []corev1.Pod
	delay    time.Duration
	status   int
}

// NewKubelet starts a kubelet serving pods until the test ends and returns
// its URL, CA certificate (PEM) and bearer token.
func NewKubelet(t testing.TB, pods ...corev1.Pod) (url string, caPEM []byte, token string) {
	k := StartKubelet(t, pods...)
	return k.URL, k.CAPEM, k.Token
}

// StartKubelet is NewKubelet returning the *Kubelet, to change its pods or
// count its requests.
func StartKubelet(t testing.TB, pods ...corev1.Pod) *Kubelet {
	t.Helper()
	k := &Kubelet{Token: randomHex(t, 16), pods: pods}
	srv := httptest.NewTLSServer(http.HandlerFunc(k.serve))
	t.Cleanup(srv.Close)
	k.URL = srv.URL
	k.CAPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	return k
}

// SetPods replaces the pods served.
func (k *Kubelet) SetPods(pods ...corev1.Pod) {
	k.mu.Lock()
	k.pods = pods
	k.mu.Unlock()
}

// SetDelay makes every answer wait d first.
func (k *Kubelet) SetDelay(d time.Duration) {
	k.mu.Lock()
	k.delay = d
	k.mu.Unlock()
}

// SetStatus makes /pods fail with the given HTTP status (0 restores).
func (k *Kubelet) SetStatus(code int) {
	k.mu.Lock()
	k.status = code
	k.mu.Unlock()
}

// Requests returns how many /pods requests were served.
func (k *Kubelet) Requests() int64 { return k.requests.Load() }

// MaxInFlight returns the largest number of concurrent /pods requests seen.
func (k *Kubelet) MaxInFlight() int64 { return k.maxIn.Load() }

func (k *Kubelet) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+k.Token {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	if r.URL.Path != "/pods" || r.URL.RawQuery != "" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	n := k.inFlight.Add(1)
	defer k.inFlight.Add(-1)
	for {
		m := k.maxIn.Load()
		if n <= m || k.maxIn.CompareAndSwap(m, n) {
			break
		}
	}
	k.requests.Add(1)
	k.mu.Lock()
	list := corev1.PodList{
		TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"},
		Items:    append([]corev1.Pod(nil), k.pods...),
	}
	delay, status := k.delay, k.status
	k.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay)
	}
	if status != 0 {
		http.Error(w, http.StatusText(status), status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(&list)
}

// Pod returns a running pod with one container whose status carries
// "containerd://<containerID>".
func Pod(namespace, name, serviceAccount, podUID, containerName, containerID string) corev1.Pod {
	return corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: namespace, Name: name, UID: types.UID(podUID),
			Labels: map[string]string{"app": name},
		},
		Spec: corev1.PodSpec{
			ServiceAccountName: serviceAccount,
			NodeName:           "node-1",
			Containers:         []corev1.Container{{Name: containerName, Image: "example.org/" + containerName + ":v1"}},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning,
			ContainerStatuses: []corev1.ContainerStatus{{
				Name:        containerName,
				ContainerID: "containerd://" + containerID,
				Image:       "example.org/" + containerName + ":v1",
				ImageID:     "example.org/" + containerName + "@sha256:" + strings.Repeat("ab", 32),
				Ready:       true,
			}},
		},
	}
}

// cgroup bookkeeping: every cgroup this process creates lives below one
// root named after the process, so concurrent test binaries never meet.
var (
	rootOnce sync.Once
	rootName string
	cgMu     sync.Mutex // serialises creating and removing shared parents
)

// CgroupRoot returns the cgroup path (e.g. "/hallmark-k8stest-1234-ab12")
// under which MoveToPodCgroup creates kubelet-shaped cgroups; configure the
// attestor's cgroup_root with it.
func CgroupRoot() string {
	rootOnce.Do(func() {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		rootName = "hallmark-k8stest-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b)
	})
	return "/" + rootName
}

// Hierarchy mount points on this kind of machine: cgroup v1 controllers at
// /sys/fs/cgroup/<controller>, v2 at /sys/fs/cgroup/unified.
const (
	V1Mount = "/sys/fs/cgroup/pids"
	V2Mount = "/sys/fs/cgroup/unified"
)

// CanUseCgroups reports why real cgroups cannot be used here, or nil. A
// test should fail rather than skip when it is not nil and CI is set.
func CanUseCgroups(v2 bool) error {
	if os.Geteuid() != 0 {
		return errors.New("k8stest: real cgroups need root")
	}
	mount := V1Mount
	if v2 {
		mount = V2Mount
	}
	if _, err := os.Stat(filepath.Join(mount, "cgroup.procs")); err != nil {
		return fmt.Errorf("k8stest: no cgroup hierarchy at %s: %w", mount, err)
	}
	return nil
}

// MoveToPodCgroup creates a real cgroup shaped like kubelet's for the pod
// and container, below CgroupRoot(), and moves pid into it: cgroup v1
// (cgroupfs driver, kubepods/burstable/pod<uid>/<cid>, in the pids
// hierarchy) or v2 (systemd driver, kubepods.slice/.../
// kubepods-burstable-pod<uid_>.slice/cri-containerd-<cid>.scope). It
// needs root. The returned cleanup moves pid back to the hierarchy's root
// and removes the directories, deepest first; it also runs at the end of
// the test and is safe to call twice.
func MoveToPodCgroup(t testing.TB, pid int, podUID, containerID string, v2 bool) (cleanup func()) {
	t.Helper()
	if err := CanUseCgroups(v2); err != nil {
		t.Fatal(err)
	}
	mount := V1Mount
	segs := []string{CgroupRoot()[1:], "kubepods", "burstable", "pod" + podUID, containerID}
	if v2 {
		mount = V2Mount
		segs = []string{CgroupRoot()[1:], "kubepods.slice", "kubepods-burstable.slice",
			"kubepods-burstable-pod" + strings.ReplaceAll(podUID, "-", "_") + ".slice",
			"cri-containerd-" + containerID + ".scope"}
	}
	dirs := make([]string, len(segs))
	for i := range segs {
		dirs[i] = filepath.Join(append([]string{mount}, segs[:i+1]...)...)
	}

	cgMu.Lock()
	defer cgMu.Unlock()
	for _, d := range dirs {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			t.Fatalf("k8stest: %v", err)
		}
	}
	var once sync.Once
	cleanup = func() {
		once.Do(func() {
			cgMu.Lock()
			defer cgMu.Unlock()
			// Back to the root; fails harmlessly if pid has exited.
			_ = os.WriteFile(filepath.Join(mount, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
			for i := len(dirs) - 1; i >= 0; i-- {
				removeCgroup(t, dirs[i], i == len(dirs)-1)
			}
		})
	}
	t.Cleanup(cleanup)
	leaf := dirs[len(dirs)-1]
	if err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		t.Fatalf("k8stest: move pid %d to %s: %v", pid, leaf, err)
	}
	return cleanup
}

// removeCgroup removes an empty cgroup directory. Shared parents still in
// use by another test are left for that test's cleanup. A process that has
// just exited can keep its cgroup busy for a moment: retry briefly.
func removeCgroup(t testing.TB, dir string, mine bool) {
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := syscall.Rmdir(dir)
		switch {
		case err == nil || errors.Is(err, syscall.ENOENT):
			return
		case !mine && hasSubdirs(dir):
			return // another test's cgroups are below
		case errors.Is(err, syscall.EBUSY) || errors.Is(err, syscall.ENOTEMPTY):
			if time.Now().After(deadline) {
				t.Errorf("k8stest: rmdir %s: %v", dir, err)
				return
			}
			time.Sleep(10 * time.Millisecond)
		default:
			t.Errorf("k8stest: rmdir %s: %v", dir, err)
			return
		}
	}
}

func hasSubdirs(dir string) bool {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.IsDir() {
			return true
		}
	}
	return false
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
