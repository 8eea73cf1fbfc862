package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/hallmarkid/hallmark/attestors/k8s/k8stest"
	"github.com/hallmarkid/hallmark/attestors/k8spsat/k8spsattest"
	"github.com/hallmarkid/hallmark/internal/kubetest"
	"github.com/hallmarkid/hallmark/test/testenv"
)

func mustTB(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// installRegistrarCRDs applies the shipped CRDs, namespace and registrar
// RBAC to the test binary's API server.
func installRegistrarCRDs(tb testing.TB, c *kubetest.Cluster) {
	tb.Helper()
	root := testenv.RepoRoot()
	for _, f := range []string{"namespace.yaml", "registrar-rbac.yaml"} {
		b, err := os.ReadFile(filepath.Join(root, "deploy", "kubernetes", "base", f))
		mustTB(tb, err)
		c.Apply(tb, b)
	}
	crds, _ := filepath.Glob(filepath.Join(root, "deploy", "crds", "*.yaml"))
	for _, f := range crds {
		b, err := os.ReadFile(f)
		mustTB(tb, err)
		j, err := yaml.YAMLToJSON(b)
		mustTB(tb, err)
		c.MustCreate(tb, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json.RawMessage(j))
	}
	testenv.WaitFor(tb, 20*time.Second, "the CRDs served", func() bool {
		code, _, err := c.Do(context.Background(), http.MethodGet, "/apis/spire.spiffe.io/v1alpha1/clusterspiffeids", nil)
		return err == nil && code == http.StatusOK
	})
}

// kubeCreate creates obj at path as admin and returns the stored object's
// metadata.uid.
func kubeCreate(tb testing.TB, c *kubetest.Cluster, path string, obj any) string {
	tb.Helper()
	code, body, err := c.Do(context.Background(), http.MethodPost, path, obj)
	mustTB(tb, err)
	if code != http.StatusCreated {
		tb.Fatalf("POST %s: %d %s", path, code, body)
	}
	var m struct {
		Metadata struct {
			UID string `json:"uid"`
		} `json:"metadata"`
	}
	mustTB(tb, json.Unmarshal(body, &m))
	return m.Metadata.UID
}

// regStack is a server with a k8s_registrar block (built-in Istio default)
// watching the real API server, and the k8s_psat agent of one node, whose
// k8s workload attestor asks a loopback kubelet.
type regStack struct {
	c                 *kubetest.Cluster
	srv               *testenv.Server
	ag                *testenv.Agent
	kubelet           *k8stest.Kubelet
	cluster, ns, node string
	nodeUID           string
	pods              []corev1.Pod
}

const regSA = "api-sa"

var regStacks atomic.Int64

func startRegStack(tb testing.TB) *regStack {
	tb.Helper()
	if err := k8stest.CanUseCgroups(false); err != nil {
		tb.Fatal(err) // root is required here, in CI too
	}
	n := regStacks.Add(1)
	s := &regStack{c: kubetest.Start(tb), cluster: fmt.Sprintf("e2e-reg-%d", n), ns: fmt.Sprintf("regpay-%d", n),
		node: fmt.Sprintf("e2e-reg-node-%d", n)}
	installRegistrarCRDs(tb, s.c)
	kubeCreate(tb, s.c, "/api/v1/namespaces", map[string]any{"metadata": map[string]any{"name": s.ns}})
	kubeCreate(tb, s.c, "/api/v1/namespaces/"+s.ns+"/serviceaccounts", map[string]any{"metadata": map[string]any{"name": regSA}})
	s.nodeUID = kubeCreate(tb, s.c, "/api/v1/nodes", map[string]any{"metadata": map[string]any{"name": s.node}})

	issuer := k8spsattest.NewIssuer(tb)
	agentPod := k8spsattest.Pod{Namespace: "hallmark", ServiceAccount: "hallmark-agent", Name: "hallmark-agent-e2e",
		UID: "0f0e0d0c-1111-4222-8333-444455556677", NodeName: s.node, NodeUID: s.nodeUID}
	env := testenv.New(tb)
	caPath := filepath.Join(env.Dir, "jwks-ca.pem")
	mustTB(tb, os.WriteFile(caPath, issuer.CAPEM, 0o600))
	kc := s.c.Kubeconfig(tb, env.Dir, "system:serviceaccount:hallmark:hallmark-server")
	s.srv = env.StartServer(testenv.WithHCL(`
node_attestor "k8s_psat" {
  cluster "` + s.cluster + `" {
    service_account_allow_list = ["hallmark:hallmark-agent"]
    jwks_url     = "` + issuer.JWKSURL + `"
    jwks_ca_file = "` + caPath + `"
    issuer       = "` + issuer.Name + `"
  }
}
k8s_registrar {
  cluster                  = "` + s.cluster + `"
  kube_config_file         = "` + kc + `"
  default_cluster_spiffeid = true
}`))
	s.kubelet = k8stest.StartKubelet(tb)
	kcaPath, tokPath, psatPath := filepath.Join(env.Dir, "kubelet-ca.pem"), filepath.Join(env.Dir, "kubelet-token"), filepath.Join(env.Dir, "psat")
	mustTB(tb, os.WriteFile(kcaPath, s.kubelet.CAPEM, 0o600))
	mustTB(tb, os.WriteFile(tokPath, []byte(s.kubelet.Token), 0o600))
	mustTB(tb, os.WriteFile(psatPath, []byte(issuer.Token(tb, agentPod, []string{k8spsattest.DefaultAudience}, time.Hour)+"\n"), 0o600))
	s.ag = env.StartAgent(s.srv, "", testenv.WithAgentTopHCL(`
node_attestor "k8s_psat" {
  cluster    = "`+s.cluster+`"
  token_path = "`+psatPath+`"
}
workload_attestor "k8s" {
  kubelet_url     = "`+s.kubelet.URL+`"
  kubelet_ca_path = "`+kcaPath+`"
  token_path      = "`+tokPath+`"
  cgroup_root     = "`+k8stest.CgroupRoot()+`"
}`))
	return s
}

// podSVID creates pod name in the API server (bound to the node, as the
// scheduler would), lets the kubelet list it, runs a process in its cgroup
// that fetches its SVIDs (retrying until one arrives) and returns what it
// got, the pod's UID and the time from the create call to the SVID.
func (s *regStack) podSVID(tb testing.TB, name string) (got, podUID string, took time.Duration) {
	tb.Helper()
	t0 := time.Now()
	podUID = kubeCreate(tb, s.c, "/api/v1/namespaces/"+s.ns+"/pods", map[string]any{
		"metadata": map[string]any{"name": name},
		"spec": map[string]any{"nodeName": s.node, "serviceAccountName": regSA, "automountServiceAccountToken": false,
			"containers": []any{map[string]any{"name": "api", "image": "registry.example/api:1"}}},
	})
	cid := fmt.Sprintf("%064x", len(s.pods)+1)
	s.pods = append(s.pods, k8stest.Pod(s.ns, name, regSA, podUID, "api", cid))
	s.kubelet.SetPods(slices.Clone(s.pods)...)
	child := exec.Command(os.Args[0])
	child.Env = append(os.Environ(), "HALLMARK_TEST_CHILD=fetch", "HALLMARK_TEST_RETRY=1", "HALLMARK_TEST_ADDR="+s.ag.Addr())
	stdin, err := child.StdinPipe()
	mustTB(tb, err)
	var out, errOut bytes.Buffer
	child.Stdout, child.Stderr = &out, &errOut
	mustTB(tb, child.Start())
	cleanup := k8stest.MoveToPodCgroup(tb, child.Process.Pid, podUID, cid, false)
	_, _ = io.WriteString(stdin, "go\n")
	err = child.Wait()
	took = time.Since(t0)
	if cleanup != nil {
		cleanup()
	}
	if err != nil {
		tb.Fatalf("child: %v\nstderr: %s\nagent log:\n%s", err, errOut.String(), s.ag.Log())
	}
	return strings.TrimSpace(out.String()), podUID, took
}

// The whole path with nothing registered by hand: a pod created in the
// API server gets Istio's SVID at a process in its cgroup, through the
// registrar in the server and the node's k8s_psat agent.
func TestK8sRegistrarPodGetsSVIDE2E(t *testing.T) {
	s := startRegStack(t)
	mustContainAll(t, "agent list", s.srv.MustCLI("agent", "list"), "spiffe://example.org/agent/k8s_psat/"+s.cluster+"/"+s.nodeUID)
	got, podUID, took := s.podSVID(t, "api-7d9f")
	want := "spiffe://example.org/ns/" + s.ns + "/sa/" + regSA
	if got != want {
		t.Fatalf("pod process got %q, want %q", got, want)
	}
	t.Logf("pod created → SVID at the workload: %v", took)
	mustContainAll(t, "entry show", s.srv.MustCLI("entry", "show", "-spiffeID", want),
		"k8sreg:"+s.cluster+":", "k8s:pod-uid:"+podUID, fmt.Sprintf("spiffe://example.org/agent/k8s_psat/%s/%s", s.cluster, s.nodeUID))
}

// BenchmarkK8sRegistrarPodToSVID: pod created in the real API server →
// SVID at a process in the pod (a fresh process per pod, whose exec is
// included), through the server's registrar and the node's agent; p50/p99.
// Run: go test -run XXX -bench K8sRegistrarPodToSVID -benchtime 100x ./test/
func BenchmarkK8sRegistrarPodToSVID(b *testing.B) {
	s := startRegStack(b)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		got, _, took := s.podSVID(b, fmt.Sprintf("p%d", i))
		if !strings.HasPrefix(got, "spiffe://example.org/ns/"+s.ns+"/") {
			b.Fatalf("got %q", got)
		}
		lat = append(lat, took)
	}
	b.StopTimer()
	slices.Sort(lat)
	q := func(f float64) float64 {
		return float64(lat[min(len(lat)-1, int(f*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
}

// Two servers on one PostgreSQL database, both with the k8s_registrar
// block: one holds the Lease and writes, the other serves the same entries
// through the change feed; when the leader stops, the other takes over.
func TestK8sRegistrarHAPostgres(t *testing.T) {
	c := kubetest.Start(t)
	installRegistrarCRDs(t, c)
	n := regStacks.Add(1)
	cluster, ns, node := fmt.Sprintf("ha-reg-%d", n), fmt.Sprintf("hareg-%d", n), fmt.Sprintf("ha-reg-node-%d", n)
	kubeCreate(t, c, "/api/v1/namespaces", map[string]any{"metadata": map[string]any{"name": ns}})
	kubeCreate(t, c, "/api/v1/namespaces/"+ns+"/serviceaccounts", map[string]any{"metadata": map[string]any{"name": regSA}})
	kubeCreate(t, c, "/api/v1/nodes", map[string]any{"metadata": map[string]any{"name": node}})
	env := testenv.New(t)
	hcl := postgresDatastore(t) + `
k8s_registrar {
  cluster                  = "` + cluster + `"
  kube_config_file         = "` + c.Kubeconfig(t, env.Dir, "system:serviceaccount:hallmark:hallmark-server") + `"
  default_cluster_spiffeid = true
}`
	a := env.StartServer(testenv.WithHCL(hcl))
	b := env.StartServer(testenv.WithHCL(hcl), testenv.WithCAFrom(a))
	leading := func(s *testenv.Server) bool { return strings.Contains(s.Log(), "Registrar leading") }
	testenv.WaitFor(t, 20*time.Second, "a leader", func() bool { return leading(a) || leading(b) })
	leader, follower := a, b
	if leading(b) {
		leader, follower = b, a
	}
	pod := func(name string) {
		kubeCreate(t, c, "/api/v1/namespaces/"+ns+"/pods", map[string]any{
			"metadata": map[string]any{"name": name},
			"spec": map[string]any{"nodeName": node, "serviceAccountName": regSA, "automountServiceAccountToken": false,
				"containers": []any{map[string]any{"name": "api", "image": "registry.example/api:1"}}},
		})
	}
	want := "spiffe://example.org/ns/" + ns + "/sa/" + regSA
	listed := func(s *testenv.Server, count string) bool {
		out, err := s.CLI("entry", "show", "-spiffeID", want)
		return err == nil && strings.Contains(out, count)
	}
	pod("p1")
	testenv.WaitFor(t, 10*time.Second, "the entry on both servers", func() bool {
		return listed(leader, "Found 1 entry") && listed(follower, "Found 1 entry")
	})
	if leading(follower) {
		t.Fatal("both servers lead")
	}
	leader.Stop()
	testenv.WaitFor(t, 20*time.Second, "the follower taking over", func() bool { return leading(follower) })
	pod("p2")
	testenv.WaitFor(t, 10*time.Second, "the new pod's entry written by the new leader", func() bool {
		return listed(follower, "Found 2 entries")
	})
}
