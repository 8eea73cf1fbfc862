package k8s_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2/hclsimple"
	corev1 "k8s.io/api/core/v1"

	"github.com/hallmarkid/hallmark/attestors/k8s"
	"github.com/hallmarkid/hallmark/attestors/k8s/k8stest"
	"github.com/hallmarkid/hallmark/registration"
)

// fakePID is the process the fake /proc dirs describe.
const fakePID = 4242

// procDir writes a fake /proc with <fakePID>/cgroup (and optionally
// mountinfo) and returns its path.
func procDir(t testing.TB, cgroup, mountinfo string) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "4242")
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p, "cgroup"), []byte(cgroup), 0o644); err != nil {
		t.Fatal(err)
	}
	if mountinfo != "" {
		if err := os.WriteFile(filepath.Join(p, "mountinfo"), []byte(mountinfo), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func fixture(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func fixturePods(t testing.TB, name string) []corev1.Pod {
	t.Helper()
	var list corev1.PodList
	if err := json.Unmarshal([]byte(fixture(t, name)), &list); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// newAttestor returns an attestor talking to k with its token and CA.
func newAttestor(t testing.TB, k *k8stest.Kubelet, proc string, mod func(*k8s.Config)) *k8s.Attestor {
	t.Helper()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(ca, k.CAPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tok, []byte(k.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := k8s.Config{
		KubeletURL:        k.URL,
		KubeletCAPath:     ca,
		TokenPath:         tok,
		ProcDir:           proc,
		MaxPollAttempts:   2,
		PollRetryInterval: "10ms",
	}
	if mod != nil {
		mod(&c)
	}
	a, err := k8s.New(c)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return a
}

func values(ss []registration.Selector) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.String())
	}
	return out
}

func TestAttestFixtures(t *testing.T) {
	tests := []struct {
		name     string
		cgroup   string
		pods     string
		want     []string // must all be present
		wantNone bool
		wantErr  string
	}{
		{name: "v1 cgroupfs docker", cgroup: "cgroups_pid_in_pod.txt", pods: "pod_list.json",
			want: []string{"k8s:ns:default", "k8s:sa:default", "k8s:pod-name:blog-24ck7", "k8s:container-name:blog",
				"k8s:pod-uid:" + uidBlog, "k8s:node-name:k8s-node-1", "k8s:container-image:localhost/spiffe/blog:latest"}},
		{name: "init container", cgroup: "cgroups_init_pid_in_pod.txt", pods: "pod_list.json",
			want: []string{"k8s:ns:kube-system", "k8s:sa:flannel", "k8s:container-name:install-cni", "k8s:pod-name:kube-flannel-ds-gp1g9"}},
		{name: "systemd docker", cgroup: "systemd_cgroups_pid_in_pod.txt", pods: "pod_list.json",
			want: []string{"k8s:pod-name:blog-24ck7", "k8s:container-name:blog"}},
		{name: "systemd crio", cgroup: "systemd_crio_cgroups_pid_in_pod.txt", pods: "crio_pod_list.json",
			want: []string{"k8s:ns:sfh-199", "k8s:container-name:workload-api-client", "k8s:pod-uid:" + uidCRIO}},
		{name: "crio relative sibling", cgroup: "cgroups_pid_in_crio_pod.txt", pods: "crio_pod_list.json",
			want: []string{"k8s:ns:sfh-199", "k8s:pod-name:sample-workload-6658cb9566-5n4b4"}},
		{name: "kind", cgroup: "cgroups_pid_in_kind_pod.txt", pods: "kind_pod_list.json",
			want: []string{"k8s:ns:default", "k8s:node-name:kind-control-plane", "k8s:pod-owner:ReplicaSet:sample-workload-6658cb9566"}},
		{name: "not in a pod", cgroup: "cgroups_pid_not_in_pod.txt", pods: "pod_list.json", wantNone: true},
		{name: "container not started yet", cgroup: "cgroups_pid_in_pod.txt", pods: "pod_list_not_running.json",
			wantErr: "not listed by the kubelet after 3 attempts"},
		{name: "container of another node", cgroup: "cgroups_pid_in_pod.txt", pods: "crio_pod_list.json",
			wantErr: "not listed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := k8stest.StartKubelet(t, fixturePods(t, tt.pods)...)
			a := newAttestor(t, k, procDir(t, fixture(t, tt.cgroup), ""), nil)
			got, err := a.Attest(context.Background(), fakePID)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Attest: %v", err)
			}
			if tt.wantNone {
				if len(got) != 0 {
					t.Fatalf("got %v, want none", got)
				}
				if k.Requests() != 0 {
					t.Fatalf("kubelet asked %d times for a process outside any pod", k.Requests())
				}
				return
			}
			vs := values(got)
			for _, w := range tt.want {
				if !slices.Contains(vs, w) {
					t.Errorf("missing %q in %v", w, vs)
				}
			}
			for _, s := range got {
				if err := s.Validate(); err != nil || s.Type != "k8s" {
					t.Errorf("bad selector %v: %v", s, err)
				}
			}
		})
	}
}

func TestAttestSelectorsExact(t *testing.T) {
	pod := k8stest.Pod("prod", "web-0", "web-sa", uid, "app", hex64)
	pod.Labels = map[string]string{"app": "web", "empty": ""}
	pod.OwnerReferences = append(pod.OwnerReferences, ownerRef("StatefulSet", "web", "aaaa"))
	pod.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "init", Image: "init:1", ImageID: "init@sha256:00", ContainerID: "cri-o://" + otherHex}}
	k := k8stest.StartKubelet(t, pod)
	a := newAttestor(t, k, procDir(t, "0::/kubepods/burstable/pod"+uid+"/"+hex64+"\n", ""), nil)
	got, err := a.Attest(context.Background(), fakePID)
	if err != nil {
		t.Fatal(err)
	}
	img := "example.org/app:v1"
	imgID := "example.org/app@sha256:" + strings.Repeat("ab", 32)
	want := []string{
		"k8s:container-image:" + img, "k8s:container-image:" + imgID, "k8s:container-name:app",
		"k8s:node-name:node-1", "k8s:ns:prod",
		"k8s:pod-image-count:1", "k8s:pod-image:" + img, "k8s:pod-image:" + imgID,
		"k8s:pod-init-image-count:1", "k8s:pod-init-image:init:1", "k8s:pod-init-image:init@sha256:00",
		"k8s:pod-label:app:web", "k8s:pod-label:empty:", "k8s:pod-name:web-0",
		"k8s:pod-owner-uid:StatefulSet:aaaa", "k8s:pod-owner:StatefulSet:web",
		"k8s:pod-uid:" + uid, "k8s:sa:web-sa",
	}
	if !slices.Equal(values(got), want) {
		t.Fatalf("selectors:\n got %q\nwant %q", values(got), want)
	}
	// Attesting again hands out a fresh slice: callers may modify it.
	got[0].Value = "x"
	again, _ := a.Attest(context.Background(), fakePID)
	if again[0].Value == "x" {
		t.Fatal("Attest returned shared memory")
	}
}

func TestAttestErrors(t *testing.T) {
	inPod := "0::/kubepods/burstable/pod" + uid + "/" + hex64 + "\n"
	tests := []struct {
		name    string
		cgroup  string
		pods    []corev1.Pod
		setup   func(*k8stest.Kubelet)
		mod     func(*k8s.Config)
		pid     int32
		wantErr string
	}{
		{name: "pod uid in cgroup disagrees with the kubelet", cgroup: inPod,
			pods:    []corev1.Pod{k8stest.Pod("ns", "p", "sa", uidBlog, "c", hex64)},
			wantErr: "belongs to pod " + uidBlog},
		{name: "container id listed in two pods is believed in neither", cgroup: inPod,
			pods:    []corev1.Pod{k8stest.Pod("ns", "p", "sa", uid, "c", hex64), k8stest.Pod("ns", "q", "sa", uidBlog, "c", hex64)},
			wantErr: "not listed"},
		{name: "kubelet failing", cgroup: inPod, setup: func(k *k8stest.Kubelet) { k.SetStatus(500) },
			wantErr: "500 Internal Server Error"},
		{name: "wrong token", cgroup: inPod, mod: func(c *k8s.Config) {
			p := filepath.Join(filepath.Dir(c.TokenPath), "other")
			_ = os.WriteFile(p, []byte("nope"), 0o600)
			c.TokenPath = p
		}, wantErr: "401 Unauthorized"},
		{name: "missing token", cgroup: inPod, mod: func(c *k8s.Config) { c.TokenPath += ".missing" }, wantErr: "kubelet token"},
		{name: "kubelet certificate not from the CA", cgroup: inPod, mod: func(c *k8s.Config) {
			// A CA that did not sign the kubelet's certificate.
			p := filepath.Join(filepath.Dir(c.KubeletCAPath), "other.pem")
			_ = os.WriteFile(p, otherCA(t), 0o644)
			c.KubeletCAPath = p
		}, wantErr: "certificate"},
		{name: "process gone", cgroup: inPod, pid: 999999, wantErr: "no such file"},
		{name: "garbage cgroup file", cgroup: "nonsense", wantErr: "malformed"},
		{name: "invalid pid", cgroup: inPod, pid: -1, wantErr: "invalid pid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := k8stest.StartKubelet(t, tt.pods...)
			if tt.setup != nil {
				tt.setup(k)
			}
			a := newAttestor(t, k, procDir(t, tt.cgroup, ""), tt.mod)
			pid := tt.pid
			if pid == 0 {
				pid = fakePID
			}
			got, err := a.Attest(context.Background(), pid)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Attest = %v, %v; want error %q", got, err, tt.wantErr)
			}
		})
	}
}

func TestAttestSkipVerification(t *testing.T) {
	k := k8stest.StartKubelet(t, k8stest.Pod("ns", "p", "sa", uid, "c", hex64))
	a := newAttestor(t, k, procDir(t, "0::/kubepods/pod"+uid+"/"+hex64, ""), func(c *k8s.Config) {
		c.KubeletCAPath = "/nonexistent"
		c.SkipKubeletVerification = true
	})
	if got, err := a.Attest(context.Background(), fakePID); err != nil || len(got) == 0 {
		t.Fatalf("Attest = %v, %v", got, err)
	}
}

func TestAttestReadOnlyPortSendsNoToken(t *testing.T) {
	pod := k8stest.Pod("ns", "p", "sa", uid, "c", hex64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" || r.URL.Path != "/pods" {
			http.Error(w, "unexpected", http.StatusBadRequest)
			return
		}
		_ = json.NewEncoder(w).Encode(corev1.PodList{Items: []corev1.Pod{pod}})
	}))
	t.Cleanup(srv.Close)
	tok := filepath.Join(t.TempDir(), "token")
	_ = os.WriteFile(tok, []byte("secret"), 0o600)
	a, err := k8s.New(k8s.Config{KubeletURL: srv.URL, TokenPath: tok, ProcDir: procDir(t, "0::/kubepods/pod"+uid+"/"+hex64, "")})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := a.Attest(context.Background(), fakePID); err != nil || len(got) == 0 {
		t.Fatalf("Attest = %v, %v", got, err)
	}
}

// A new pod's container appears in the kubelet's list a little after its
// process starts: the attestor polls until it is there.
func TestAttestWaitsForNewPod(t *testing.T) {
	k := k8stest.StartKubelet(t)
	a := newAttestor(t, k, procDir(t, "0::/kubepods/pod"+uid+"/"+hex64, ""), func(c *k8s.Config) {
		c.MaxPollAttempts = 100
		c.PollRetryInterval = "10ms"
	})
	time.AfterFunc(80*time.Millisecond, func() { k.SetPods(k8stest.Pod("ns", "p", "sa", uid, "c", hex64)) })
	got, err := a.Attest(context.Background(), fakePID)
	if err != nil || !slices.Contains(values(got), "k8s:pod-name:p") {
		t.Fatalf("Attest = %v, %v", got, err)
	}
	if k.Requests() < 2 {
		t.Fatalf("kubelet requests = %d, want a retry", k.Requests())
	}
}

func TestAttestRetryIsBounded(t *testing.T) {
	k := k8stest.StartKubelet(t)
	a := newAttestor(t, k, procDir(t, "0::/kubepods/pod"+uid+"/"+hex64, ""), func(c *k8s.Config) {
		c.MaxPollAttempts = 3
		c.PollRetryInterval = "20ms"
	})
	start := time.Now()
	_, err := a.Attest(context.Background(), fakePID)
	if err == nil || !strings.Contains(err.Error(), "after 4 attempts") {
		t.Fatalf("err = %v", err)
	}
	if n := k.Requests(); n != 4 {
		t.Fatalf("kubelet requests = %d, want 4", n)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %s", d)
	}
}

func TestAttestHonoursContext(t *testing.T) {
	k := k8stest.StartKubelet(t)
	a := newAttestor(t, k, procDir(t, "0::/kubepods/pod"+uid+"/"+hex64, ""), func(c *k8s.Config) {
		c.MaxPollAttempts = 1000
		c.PollRetryInterval = "1s"
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := a.Attest(ctx, fakePID)
	if err == nil || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Fatalf("err = %v", err)
	}
	if time.Since(start) > time.Second {
		t.Fatal("Attest ignored its context")
	}
}

// 100 concurrent attestations share kubelet requests: never more than one
// in flight, and a handful in all.
func TestAttestConcurrentSharesKubeletRequest(t *testing.T) {
	k := k8stest.StartKubelet(t, k8stest.Pod("ns", "p", "sa", uid, "c", hex64))
	k.SetDelay(30 * time.Millisecond)
	a := newAttestor(t, k, procDir(t, "0::/kubepods/pod"+uid+"/"+hex64, ""), func(c *k8s.Config) { c.PodListCacheTTL = "1m" })
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for range 100 {
		wg.Go(func() {
			if got, err := a.Attest(context.Background(), fakePID); err != nil || len(got) == 0 {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Attest: %v", err)
	}
	if k.MaxInFlight() != 1 {
		t.Fatalf("max in flight = %d, want 1", k.MaxInFlight())
	}
	if n := k.Requests(); n != 1 {
		t.Fatalf("kubelet requests = %d for 100 attestations", n)
	}
	if a.KubeletRequests() != uint64(k.Requests()) {
		t.Fatalf("KubeletRequests() = %d, kubelet saw %d", a.KubeletRequests(), k.Requests())
	}
}

// A workload can write what it likes into its own mount namespace, and so
// shape /proc/<pid>/mountinfo; the attestor never reads it.
func TestAttestIgnoresForgedMountinfo(t *testing.T) {
	victim := k8stest.Pod("prod", "payments", "payments-sa", uid, "c", hex64)
	forged := "1 0 0:42 /kubepods/burstable/pod" + uid + "/" + hex64 + " /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
	k := k8stest.StartKubelet(t, victim)
	a := newAttestor(t, k, procDir(t, fixture(t, "cgroups_pid_not_in_pod.txt"), forged), nil)
	got, err := a.Attest(context.Background(), fakePID)
	if err != nil || len(got) != 0 {
		t.Fatalf("Attest = %v, %v; want no selectors", got, err)
	}
}

func TestNewConfig(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	_ = os.WriteFile(ca, otherCA(t), 0o644)
	bad := filepath.Join(t.TempDir(), "bad.pem")
	_ = os.WriteFile(bad, []byte("not pem"), 0o644)
	tests := []struct {
		name    string
		c       k8s.Config
		wantErr string
	}{
		{name: "defaults with CA", c: k8s.Config{KubeletCAPath: ca}},
		{name: "read-only port needs no CA", c: k8s.Config{KubeletReadOnlyPort: 10255}},
		{name: "skip verification needs no CA", c: k8s.Config{SkipKubeletVerification: true}},
		{name: "default CA missing", c: k8s.Config{KubeletCAPath: "/nonexistent/ca.crt"}, wantErr: "kubelet CA"},
		{name: "CA not PEM", c: k8s.Config{KubeletCAPath: bad}, wantErr: "no PEM certificates"},
		{name: "bad url", c: k8s.Config{KubeletURL: "ftp://x", SkipKubeletVerification: true}, wantErr: "kubelet_url"},
		{name: "url with credentials", c: k8s.Config{KubeletURL: "https://u:p@x", SkipKubeletVerification: true}, wantErr: "kubelet_url"},
		{name: "url and read-only port", c: k8s.Config{KubeletURL: "http://x", KubeletReadOnlyPort: 1}, wantErr: "mutually exclusive"},
		{name: "bad port", c: k8s.Config{KubeletSecurePort: 70000, SkipKubeletVerification: true}, wantErr: "out of range"},
		{name: "bad interval", c: k8s.Config{PollRetryInterval: "soon", SkipKubeletVerification: true}, wantErr: "poll_retry_interval"},
		{name: "interval too long", c: k8s.Config{PollRetryInterval: "1h", SkipKubeletVerification: true}, wantErr: "out of range"},
		{name: "negative attempts", c: k8s.Config{MaxPollAttempts: -1, SkipKubeletVerification: true}, wantErr: "max_poll_attempts"},
		{name: "bad cgroup root", c: k8s.Config{CgroupRoot: "x/y", SkipKubeletVerification: true}, wantErr: "cgroup root"},
		{name: "bad cache ttl", c: k8s.Config{PodListCacheTTL: "-1s", SkipKubeletVerification: true}, wantErr: "pod_list_cache_ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := k8s.New(tt.c)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if a.Name() != "k8s" {
					t.Fatalf("Name = %q", a.Name())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// The config decodes strictly from HCL as the agent's wiring will do it.
func TestConfigHCL(t *testing.T) {
	src := `
kubelet_secure_port = 10250
node_name_env = "NODE"
skip_kubelet_verification = true
max_poll_attempts = 5
poll_retry_interval = "200ms"
cgroup_root = "/kubelet.slice"
`
	var c k8s.Config
	if err := hclsimple.Decode("agent.hcl", []byte(src), nil, &c); err != nil {
		t.Fatal(err)
	}
	if c.NodeNameEnv != "NODE" || c.MaxPollAttempts != 5 || c.CgroupRoot != "/kubelet.slice" || !c.SkipKubeletVerification {
		t.Fatalf("decoded %+v", c)
	}
	if _, err := k8s.New(c); err != nil {
		t.Fatal(err)
	}
	if err := hclsimple.Decode("agent.hcl", []byte(`kubelet_ca = "/x"`), nil, &c); err == nil {
		t.Fatal("unknown key accepted")
	}
}
