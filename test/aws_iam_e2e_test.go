package test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/attestors/awsiam/awsfake"
	"github.com/hallmarkid/hallmark/test/testenv"
)

// containerCredentials is a strict loopback fake of the ECS / EKS Pod
// Identity container credentials endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI):
// GET only, on a known path, with that path's authorization token; it
// answers with the task role's temporary credentials in the endpoint's
// JSON shape.
type containerCredentials struct {
	URL     string
	Served  atomic.Int64
	Refused atomic.Int64
}

type taskRole struct {
	token string
	creds awsfake.Credentials
}

func newContainerCredentials(t *testing.T, roles map[string]taskRole) *containerCredentials {
	c := &containerCredentials{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		role, ok := roles[r.URL.Path]
		switch {
		case r.Method != http.MethodGet || r.URL.RawQuery != "":
			c.Refused.Add(1)
			http.Error(w, "method or query", http.StatusBadRequest)
			return
		case !ok:
			c.Refused.Add(1)
			http.NotFound(w, r)
			return
		case len(r.Header.Values("Authorization")) != 1 || r.Header.Get("Authorization") != role.token:
			c.Refused.Add(1)
			http.Error(w, `{"code":"AccessDeniedException","message":"invalid authorization token"}`, http.StatusForbidden)
			return
		}
		c.Served.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{
			"RoleArn":         "arn:aws:iam::111122223333:role/task",
			"AccessKeyId":     role.creds.AccessKeyID,
			"SecretAccessKey": role.creds.SecretAccessKey,
			"Token":           role.creds.SessionToken,
			"Expiration":      time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
		})
	}))
	t.Cleanup(srv.Close)
	c.URL = srv.URL
	return c
}

// newECSTaskMetadata is a loopback fake of the ECS task metadata v4
// endpoint; only GET <base>/task is served.
func newECSTaskMetadata(t *testing.T, task map[string]any) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/v4/abc123-container/task" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(task)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/v4/abc123-container"
}

// clearAWSEnv empties every credential source the agent's chain reads, for
// this test only; agents inherit the test's environment.
func clearAWSEnv(t *testing.T) {
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_WEB_IDENTITY_TOKEN_FILE",
		"AWS_ROLE_ARN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
		"AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "AWS_REGION", "ECS_CONTAINER_METADATA_URI_V4"} {
		t.Setenv(k, "")
	}
}

// A Fargate task attests with its task role: the agent takes the role's
// credentials from the container credentials endpoint, signs
// sts:GetCallerIdentity with the server's challenge in a signed header,
// and the server, after checking the request, forwards it to STS (a
// loopback fake that verifies SigV4 itself). The agent's ID and selectors
// come from STS's answer, plus the task's unverified ECS hints; renewals
// re-attest with a fresh signature. A workload under a node alias of the
// role gets its SVID. Refusals: a role outside role_names, and credentials
// STS does not know.
func TestAWSIAMFargateNodeAttestationE2E(t *testing.T) {
	const (
		account = "111122223333"
		session = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
	)
	payments := awsfake.Identity{
		Credentials: awsfake.Credentials{AccessKeyID: "ASIAPAYMENTSTASK0001", SecretAccessKey: "payments-secret", SessionToken: "payments-session-token"},
		Arn:         "arn:aws:sts::" + account + ":assumed-role/payments-task/" + session,
		Account:     account, UserID: "AROAPAYMENTS:" + session,
	}
	batch := awsfake.Identity{
		Credentials: awsfake.Credentials{AccessKeyID: "ASIABATCHTASK0000001", SecretAccessKey: "batch-secret", SessionToken: "batch-session-token"},
		Arn:         "arn:aws:sts::" + account + ":assumed-role/batch-task/0f0e0d0c0b0a",
		Account:     account, UserID: "AROABATCH:0f0e0d0c0b0a",
	}
	sts := awsfake.NewSTS(t, payments, batch)
	credsEP := newContainerCredentials(t, map[string]taskRole{
		"/v2/credentials/payments": {token: "payments-container-token", creds: payments.Credentials},
		"/v2/credentials/batch":    {token: "batch-container-token", creds: batch.Credentials},
	})
	const taskARN = "arn:aws:ecs:us-east-1:111122223333:task/prod/5e1b2c3d4e5f40718293a4b5c6d7e8f9"
	metadata := newECSTaskMetadata(t, map[string]any{
		"Cluster": "arn:aws:ecs:us-east-1:111122223333:cluster/prod", "TaskARN": taskARN,
		"Family": "payments", "Revision": "7", "LaunchType": "FARGATE",
	})

	env := testenv.New(t)
	// The agent renews at half-life: with 20 s SVIDs (backdated 10 s) some
	// 5 s after attesting. Shorter TTLs make today's agent renew at once,
	// again and again (half-life is counted from the backdated NotBefore).
	srv := env.StartServer(testenv.WithServerHCL(`agent_svid_ttl = "20s"`), testenv.WithHCL(`
node_attestor "aws_iam" {
  account_ids      = ["`+account+`"]
  role_names       = ["payments-task"]
  sts_hosts        = ["sts.us-east-1.amazonaws.com"]
  sts_url_override = "`+sts.URL+`"
  ecs_hints        = true
}`))
	agentHCL := testenv.WithAgentTopHCL(`
node_attestor "aws_iam" {
  sts_region        = "us-east-1"
  ecs_task_metadata = true
  ecs_metadata_uri  = "` + metadata + `"
}`)

	clearAWSEnv(t)
	t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", credsEP.URL+"/v2/credentials/payments")
	t.Setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "payments-container-token")
	ag := env.StartAgent(srv, "", agentHCL)

	agentID := "spiffe://example.org/agent/aws_iam/" + account + "/payments-task/" + session
	mustContainAll(t, "agent list", srv.MustCLI("agent", "list"),
		agentID,
		"Can re-attest     : true",
		"aws_iam:account:"+account,
		"aws_iam:role:payments-task",
		"aws_iam:session:"+session,
		"aws_ecs_hint:task_arn:"+taskARN,
		"aws_ecs_hint:cluster:arn:aws:ecs:us-east-1:111122223333:cluster/prod",
		"aws_ecs_hint:family:payments",
	)
	if credsEP.Served.Load() == 0 || credsEP.Refused.Load() != 0 {
		t.Fatalf("container credentials endpoint: served %d, refused %d", credsEP.Served.Load(), credsEP.Refused.Load())
	}
	// The challenge travelled in a signed header, to the signed host.
	// The challenge header names the server the agent attests to.
	heads := sts.Headers()
	if len(heads) == 0 || !strings.HasPrefix(heads[0].Get("X-Hallmark-Challenge"), "spiffe://example.org/hallmark/server ") ||
		heads[0].Get("X-Amz-Security-Token") != payments.SessionToken {
		t.Fatalf("STS saw headers %v; want the challenge naming the server and the task's session token", heads)
	}

	// Register by verified facts only (account and role), never by hints.
	const alias = "spiffe://example.org/nodes/fargate/payments"
	srv.MustCLI("entry", "create", "-node", "-spiffeID", alias,
		"-selector", "aws_iam:account:"+account, "-selector", "aws_iam:role:payments-task")
	const want = "spiffe://example.org/fargate/payments-api"
	srv.CreateEntry(want, alias, "-selector", uidSelector())
	waitForSVID(t, ag.Addr(), want)

	// Refusal 1: a genuine role of the account, but not an allowed one.
	t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", credsEP.URL+"/v2/credentials/batch")
	t.Setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "batch-container-token")
	batchAgent := env.StartAgent(srv, "", agentHCL, testenv.NoWait())
	waitRefused(t, srv, batchAgent, `role \"batch-task\" is not in the allow-list`)

	// Refusal 2: keys STS does not know (say, revoked): the server passes
	// STS's verdict on.
	t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "")
	t.Setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNKEY000001")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
	stranger := env.StartAgent(srv, "", agentHCL, testenv.NoWait())
	waitRefused(t, srv, stranger, "STS answered 403")

	// Refusal 3: a request signed for another server (the agent's server_id
	// names another deployment) is refused before it reaches STS.
	clearAWSEnv(t)
	t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", credsEP.URL+"/v2/credentials/payments")
	t.Setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "payments-container-token")
	relayed := env.StartAgent(srv, "", testenv.WithAgentTopHCL(`
node_attestor "aws_iam" {
  sts_region = "us-east-1"
  server_id  = "hallmark-other-deployment"
}`), testenv.NoWait())
	waitRefused(t, srv, relayed, "challenge header names hallmark-other-deployment, this server is spiffe://example.org/hallmark/server")
	for _, h := range sts.Headers() {
		if strings.HasPrefix(h.Get("X-Hallmark-Challenge"), "hallmark-other-deployment ") {
			t.Errorf("a request signed for another server reached STS: %v", h)
		}
	}

	testenv.WaitFor(t, 5*time.Second, "the refusals in the audit log", func() bool {
		return auditHas(t, srv, "rejected", `"attestor":"aws_iam"`, "batch-task") &&
			auditHas(t, srv, "rejected", `"attestor":"aws_iam"`, "STS answered 403")
	})

	// Every renewal is a fresh proof: STS is asked again.
	accepted := sts.Accepted.Load()
	testenv.WaitFor(t, 15*time.Second, "a re-attested renewal", func() bool { return sts.Accepted.Load() > accepted })
	testenv.WaitFor(t, 5*time.Second, "the renewal in the audit log", func() bool {
		return auditHas(t, srv, "accepted", `"attestor":"aws_iam"`, `"renewal":true`, agentID)
	})

	if err := ag.Healthy(); err != nil {
		t.Fatalf("attested agent unhealthy: %v", err)
	}
}
