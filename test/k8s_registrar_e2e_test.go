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
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/hallmarkid/hallmark/attestors/k8s/k8stest"
	"github.com/hallmarkid/hallmark/attestors/k8spsat/k8spsattest"
	"github.com/hallmarkid/hallmark/internal/kubetest"
	"github.com/hallmarkid/hallmark/test/testenv"
)

// installRegistrarCRDs applies the shipped CRDs, namespace and registrar
// RBAC to the test binary's API server.
func installRegistrarCRDs(t *testing.T, c *kubetest.Cluster) {
	t.Helper()
	root := testenv.RepoRoot()
	for _, f := range []string{"namespace.yaml", "registrar-rbac.yaml"} {
		b, err := os.ReadFile(filepath.Join(root, "deploy", "kubernetes", "base", f))
		must(t, err)
		c.Apply(t, b)
	}
	crds, _ := filepath.Glob(filepath.Join(root, "deploy", "crds", "*.yaml"))
	for _, f := range crds {
		b, err := os.ReadFile(f)
		must(t, err)
		j, err := yaml.YAMLToJSON(b)
		must(t, err)
		c.MustCreate(t, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json.RawMessage(j))
	}
	testenv.WaitFor(t, 20*time.Second, "the CRDs served", func() bool {
		code, _, err := c.Do(context.Background(), http.MethodGet, "/apis/spire.spiffe.io/v1alpha1/clusterspiffeids", nil)
		return err == nil && code == http.StatusOK
	})
}

// kubeCreate creates obj at path as admin and returns the stored object's
// metadata.uid.
func kubeCreate(t *testing.T, c *kubetest.Cluster, path string, obj any) string {
	t.Helper()
	code, body, err := c.Do(context.Background(), http.MethodPost, path, obj)
	must(t, err)
	if code != http.StatusCreated {
		t.Fatalf("POST %s: %d %s", path, code, body)
	}
	var m struct {
		Metadata struct {
			UID string `json:"uid"`
		} `json:"metadata"`
	}
	must(t, json.Unmarshal(body, &m))
	return m.Metadata.UID
}

// The whole path with nothing registered by hand: a server with a
// k8s_registrar block (built-in Istio default) watches a real API server;
// an agent attests with k8s_psat as the node's agent; a pod is created on
// that node; a process in the pod's (real) cgroup then fetches Istio's
// SVID for the pod through the agent's k8s workload attestor.
func TestK8sRegistrarPodGetsSVIDE2E(t *testing.T) {
	if err := k8stest.CanUseCgroups(false); err != nil {
		t.Fatal(err) // root is required here, in CI too
	}
	c := kubetest.Start(t)
	installRegistrarCRDs(t, c)
	const ns, sa, cluster = "regpay", "api-sa", "e2e-reg"
	kubeCreate(t, c, "/api/v1/namespaces", map[string]any{"metadata": map[string]any{"name": ns}})
	kubeCreate(t, c, "/api/v1/namespaces/"+ns+"/serviceaccounts", map[string]any{"metadata": map[string]any{"name": sa}})
	nodeUID := kubeCreate(t, c, "/api/v1/nodes", map[string]any{"metadata": map[string]any{"name": "e2e-reg-node"}})

	issuer := k8spsattest.NewIssuer(t)
	agentPod := k8spsattest.Pod{Namespace: "hallmark", ServiceAccount: "hallmark-agent", Name: "hallmark-agent-e2e",
		UID: "0f0e0d0c-1111-4222-8333-444455556677", NodeName: "e2e-reg-node", NodeUID: nodeUID}
	env := testenv.New(t)
	caPath := filepath.Join(env.Dir, "jwks-ca.pem")
	must(t, os.WriteFile(caPath, issuer.CAPEM, 0o600))
	kc := c.Kubeconfig(t, env.Dir, "system:serviceaccount:hallmark:hallmark-server")
	srv := env.StartServer(testenv.WithHCL(`
node_attestor "k8s_psat" {
  cluster "` + cluster + `" {
    service_account_allow_list = ["hallmark:hallmark-agent"]
    jwks_url     = "` + issuer.JWKSURL + `"
    jwks_ca_file = "` + caPath + `"
    issuer       = "` + issuer.Name + `"
  }
}
k8s_registrar {
  cluster                  = "` + cluster + `"
  kube_config_file         = "` + kc + `"
  default_cluster_spiffeid = true
}`))

	// The pod: created bound to the node (no scheduler), Running.
	t0 := time.Now()
	podUID := kubeCreate(t, c, "/api/v1/namespaces/"+ns+"/pods", map[string]any{
		"metadata": map[string]any{"name": "api-7d9f"},
		"spec": map[string]any{"nodeName": "e2e-reg-node", "serviceAccountName": sa, "automountServiceAccountToken": false,
			"containers": []any{map[string]any{"name": "api", "image": "registry.example/api:1"}}},
	})
	cid := strings.Repeat("cd34", 16)
	url, kcaPEM, token := k8stest.NewKubelet(t, k8stest.Pod(ns, "api-7d9f", sa, podUID, "api", cid))
	kcaPath, tokPath := filepath.Join(env.Dir, "kubelet-ca.pem"), filepath.Join(env.Dir, "kubelet-token")
	must(t, os.WriteFile(kcaPath, kcaPEM, 0o600))
	must(t, os.WriteFile(tokPath, []byte(token), 0o600))
	ag := startPSATAgent(t, env, srv, cluster, issuer.Token(t, agentPod, []string{k8spsattest.DefaultAudience}, time.Hour),
		testenv.WithAgentTopHCL(`
workload_attestor "k8s" {
  kubelet_url     = "`+url+`"
  kubelet_ca_path = "`+kcaPath+`"
  token_path      = "`+tokPath+`"
  cgroup_root     = "`+k8stest.CgroupRoot()+`"
}`))
	mustContainAll(t, "agent list", srv.MustCLI("agent", "list"), "spiffe://example.org/agent/k8s_psat/"+cluster+"/"+nodeUID)

	const want = "spiffe://example.org/ns/" + ns + "/sa/" + sa
	child := exec.Command(os.Args[0])
	child.Env = append(os.Environ(), "HALLMARK_TEST_CHILD=fetch", "HALLMARK_TEST_RETRY=1", "HALLMARK_TEST_ADDR="+ag.Addr())
	stdin, err := child.StdinPipe()
	must(t, err)
	var out, errOut bytes.Buffer
	child.Stdout, child.Stderr = &out, &errOut
	must(t, child.Start())
	k8stest.MoveToPodCgroup(t, child.Process.Pid, podUID, cid, false)
	_, _ = io.WriteString(stdin, "go\n")
	if err := child.Wait(); err != nil {
		t.Fatalf("child: %v\nstderr: %s\nagent log:\n%s\nserver log:\n%s", err, errOut.String(), ag.Log(), srv.Log())
	}
	if got := strings.TrimSpace(out.String()); got != want {
		t.Fatalf("pod process got %q, want %q", got, want)
	}
	t.Logf("pod created → SVID at the workload (agent start and attestation included): %v", time.Since(t0))
	mustContainAll(t, "entry show", srv.MustCLI("entry", "show", "-spiffeID", want),
		"k8sreg:"+cluster+":", "k8s:pod-uid:"+podUID, fmt.Sprintf("spiffe://example.org/agent/k8s_psat/%s/%s", cluster, nodeUID))
}
