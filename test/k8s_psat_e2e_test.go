package test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"

	"github.com/hallmarkid/hallmark/attestors/k8spsat/k8spsattest"
	"github.com/hallmarkid/hallmark/test/testenv"
)

// startPSATAgent starts an agent presenting token as its projected
// service-account token for cluster.
func startPSATAgent(t *testing.T, env *testenv.Env, srv *testenv.Server, cluster, token string, opts ...testenv.AgentOption) *testenv.Agent {
	t.Helper()
	dir, err := os.MkdirTemp(env.Dir, "tok")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "hallmark-agent")
	must(t, os.WriteFile(path, []byte(token+"\n"), 0o600))
	return env.StartAgent(srv, "", append(opts, testenv.WithAgentTopHCL(`
node_attestor "k8s_psat" {
  cluster    = "`+cluster+`"
  token_path = "`+path+`"
}`))...)
}

// Two clusters behind one server: EKS-style offline validation against the
// issuer's JWKS (served over loopback HTTPS), and an on-premises cluster
// whose API server reviews tokens (a strict loopback TokenReview API,
// reached through a kubeconfig). Each agent attests with its projected
// token and gets the ID of its node; an operator aliases the EKS agents by
// cluster and service account and a workload under the alias gets its
// SVID; renewals re-attest. The tokens carry the default audience, the
// server's SPIFFE ID. Refusals: a token for another audience, a token for
// the server of another trust domain, a service account outside the
// allow-list, a token the API server does not know.
func TestK8sPSATNodeAttestationE2E(t *testing.T) {
	issuer := k8spsattest.NewIssuer(t)
	eksPod := k8spsattest.Pod{Namespace: "hallmark", ServiceAccount: "hallmark-agent", Name: "hallmark-agent-x7k2p",
		UID: "0f0e0d0c-1111-4222-8333-444455556666", NodeName: "ip-10-0-1-23.ec2.internal", NodeUID: "aaaabbbb-cccc-4ddd-8eee-ffff00001111"}
	onpremPod := k8spsattest.Pod{Namespace: "hallmark", ServiceAccount: "hallmark-agent", Name: "hallmark-agent-q9z4d",
		UID: "11112222-3333-4444-8555-666677778888", NodeName: "rack7-node3", NodeUID: "99990000-aaaa-4bbb-8ccc-ddddeeeeffff"}
	const onpremToken = "onprem-projected-token-of-hallmark-agent-q9z4d"
	api := k8spsattest.StartAPIServer(t, map[string]authv1.TokenReviewStatus{onpremToken: k8spsattest.Review(onpremPod)})

	env := testenv.New(t)
	caPath := filepath.Join(env.Dir, "jwks-ca.pem")
	must(t, os.WriteFile(caPath, issuer.CAPEM, 0o600))
	// The agent renews at half-life: with 20 s SVIDs (backdated 10 s) some
	// 5 s after attesting. Shorter TTLs make today's agent renew at once,
	// again and again (half-life is counted from the backdated NotBefore).
	srv := env.StartServer(testenv.WithServerHCL(`agent_svid_ttl = "20s"`), testenv.WithHCL(`
node_attestor "k8s_psat" {
  cluster "eks-prod" {
    service_account_allow_list = ["hallmark:hallmark-agent"]
    jwks_url     = "`+issuer.JWKSURL+`"
    jwks_ca_file = "`+caPath+`"
    issuer       = "`+issuer.Name+`"
  }
  cluster "onprem" {
    service_account_allow_list = ["hallmark:hallmark-agent"]
    kube_config_file = "`+k8spsattest.Kubeconfig(t, api)+`"
  }
}`))

	eks := startPSATAgent(t, env, srv, "eks-prod", issuer.Token(t, eksPod, []string{k8spsattest.DefaultAudience}, time.Hour))
	onprem := startPSATAgent(t, env, srv, "onprem", onpremToken)
	eksID := "spiffe://example.org/agent/k8s_psat/eks-prod/" + eksPod.NodeUID
	onpremID := "spiffe://example.org/agent/k8s_psat/onprem/" + onpremPod.NodeUID
	mustContainAll(t, "agent list", srv.MustCLI("agent", "list"),
		eksID, onpremID,
		"k8s_psat:cluster:eks-prod",
		"k8s_psat:agent_ns:hallmark",
		"k8s_psat:agent_sa:hallmark-agent",
		"k8s_psat:agent_pod_name:"+eksPod.Name,
		"k8s_psat:agent_pod_uid:"+eksPod.UID,
		"k8s_psat:agent_node_name:"+eksPod.NodeName,
		"k8s_psat:agent_node_uid:"+eksPod.NodeUID,
		"k8s_psat:cluster:onprem",
		"k8s_psat:agent_pod_uid:"+onpremPod.UID,
		"k8s_psat:agent_node_name:"+onpremPod.NodeName,
		"k8s_psat:agent_node_uid:"+onpremPod.NodeUID,
		"Can re-attest     : true",
	)
	if issuer.Fetches() == 0 || api.Calls() == 0 {
		t.Fatalf("JWKS fetched %d times, TokenReviews %d; want both used", issuer.Fetches(), api.Calls())
	}

	const alias = "spiffe://example.org/nodes/eks-prod/hallmark-agents"
	srv.MustCLI("entry", "create", "-node", "-spiffeID", alias,
		"-selector", "k8s_psat:cluster:eks-prod", "-selector", "k8s_psat:agent_sa:hallmark-agent")
	const want = "spiffe://example.org/eks-prod/billing"
	srv.CreateEntry(want, alias, "-selector", uidSelector())
	waitForSVID(t, eks.Addr(), want)

	// Refusal 1: a genuine token of the cluster, minted for another audience.
	vaultTok := issuer.Token(t, eksPod, []string{"vault"}, time.Hour)
	waitRefused(t, srv, startPSATAgent(t, env, srv, "eks-prod", vaultTok, testenv.NoWait()), "invalid audience claim")

	// Refusal 1b: a genuine token of the cluster projected for the server of
	// another deployment (trust domain other.example, default settings), as
	// that server could replay it here.
	relayedTok := issuer.Token(t, eksPod, []string{"spiffe://other.example/hallmark/server"}, time.Hour)
	waitRefused(t, srv, startPSATAgent(t, env, srv, "eks-prod", relayedTok, testenv.NoWait()), "invalid audience claim")

	// Refusal 2: a service account that is not allowed to be an agent.
	intruder := eksPod
	intruder.ServiceAccount = "default"
	intruderTok := issuer.Token(t, intruder, []string{k8spsattest.DefaultAudience}, time.Hour)
	waitRefused(t, srv, startPSATAgent(t, env, srv, "eks-prod", intruderTok, testenv.NoWait()), `service account \"hallmark:default\" is not allowed`)

	// Refusal 3: a token the on-premises API server does not know.
	waitRefused(t, srv, startPSATAgent(t, env, srv, "onprem", "stolen-or-stale-token", testenv.NoWait()), "invalid bearer token")

	testenv.WaitFor(t, 5*time.Second, "the refusals in the audit log", func() bool {
		return auditHas(t, srv, "rejected", `"attestor":"k8s_psat"`, "invalid audience claim") &&
			auditHas(t, srv, "rejected", `"attestor":"k8s_psat"`, "hallmark:default") &&
			auditHas(t, srv, "rejected", `"attestor":"k8s_psat"`, "invalid bearer token")
	})

	// Renewals carry a fresh review of the (re-read) token.
	calls := api.Calls()
	testenv.WaitFor(t, 15*time.Second, "a re-attested renewal through TokenReview", func() bool { return api.Calls() > calls })
	testenv.WaitFor(t, 5*time.Second, "the renewal in the audit log", func() bool {
		return auditHas(t, srv, "accepted", `"attestor":"k8s_psat"`, `"renewal":true`, onpremID)
	})

	for _, ag := range []*testenv.Agent{eks, onprem} {
		if err := ag.Healthy(); err != nil {
			t.Fatalf("attested agent unhealthy: %v", err)
		}
	}
}
