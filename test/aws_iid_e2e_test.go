package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/attestors/awsiam/awsfake"
	"github.com/hallmarkid/hallmark/test/testenv"
)

// iidFixture is a real EC2 instance identity document signed by AWS (see
// testdata/aws/README.md).
type iidFixture struct {
	account, region, az, instanceID, imageID, instanceType string
	document, rsa2048                                      string
}

func loadIID(t *testing.T, name string) iidFixture {
	t.Helper()
	read := func(ext string) string {
		b, err := os.ReadFile(filepath.Join("testdata", "aws", name+"."+ext))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	f := iidFixture{document: read("document"), rsa2048: read("rsa2048")}
	switch name {
	case "iid-278576220453-us-west-2":
		f.account, f.region, f.az, f.instanceID, f.imageID, f.instanceType = "278576220453", "us-west-2", "us-west-2a", "i-078517ca8a70a1dde", "ami-0fa9e1f64142cde17", "t2.medium"
	case "iid-883474662888-us-west-1":
		f.account, f.region, f.az, f.instanceID, f.imageID, f.instanceType = "883474662888", "us-west-1", "us-west-1c", "i-01b940c45fd11fe74", "ami-0ce3c55a31d29040e", "t2.micro"
	default:
		t.Fatalf("unknown fixture %s", name)
	}
	return f
}

// imdsFiles is what an instance's IMDS serves for the aws_iid collector.
func (f iidFixture) imdsFiles() map[string]string {
	return map[string]string{
		"dynamic/instance-identity/document": f.document,
		"dynamic/instance-identity/rsa2048":  f.rsa2048,
	}
}

// startIIDAgent starts an agent whose aws_iid collector reads imds.
func startIIDAgent(env *testenv.Env, srv *testenv.Server, imds *awsfake.IMDS, opts ...testenv.AgentOption) *testenv.Agent {
	return env.StartAgent(srv, "", append(opts, testenv.WithAgentTopHCL(`
node_attestor "aws_iid" {
  imds_endpoint = "`+imds.URL+`"
}`))...)
}

// awsServerEnv gives the server process static AWS credentials and keeps
// the SDK away from shared files and the real IMDS.
func awsServerEnv(dir string, creds awsfake.Credentials) testenv.ServerOption {
	return testenv.WithServerEnv(
		"AWS_ACCESS_KEY_ID="+creds.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY="+creds.SecretAccessKey,
		"AWS_SESSION_TOKEN="+creds.SessionToken,
		"AWS_CONFIG_FILE="+filepath.Join(dir, "no-aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(dir, "no-aws-credentials"),
		"AWS_EC2_METADATA_DISABLED=true",
	)
}

// waitRefused waits for an agent whose attestation the server refuses to
// exit, and for the server to log the refusal with reason.
func waitRefused(t *testing.T, srv *testenv.Server, ag *testenv.Agent, reason string) {
	t.Helper()
	testenv.WaitFor(t, 15*time.Second, "the refused agent to exit", ag.Exited)
	if !strings.Contains(ag.Log(), "attestation refused") || !strings.Contains(ag.Log(), reason) {
		t.Fatalf("agent log does not report the refusal %q:\n%s", reason, ag.Log())
	}
	testenv.WaitFor(t, 5*time.Second, "the server to log the refusal", func() bool {
		return strings.Contains(srv.Log(), "Attestation rejected") && strings.Contains(srv.Log(), reason)
	})
}

// auditHas reports whether the server's audit log has an attestation
// record with the given result that contains every one of want.
func auditHas(t *testing.T, srv *testenv.Server, result string, want ...string) bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(srv.Dir, "data", "audit.log"))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, `"attestation"`) || !strings.Contains(line, `"result":"`+result+`"`) {
			continue
		}
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(line, w)
		}
		if ok {
			return true
		}
	}
	return false
}

func mustContainAll(t *testing.T, what, got string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Fatalf("%s lacks %q:\n%s", what, w, got)
		}
	}
}

// An EC2 node attests with the real AWS-signed identity document its IMDSv2
// serves; the server verifies AWS's signature with the embedded regional
// certificate, checks the account allow-list, asks EC2 DescribeInstances
// (a SigV4-checking loopback fake) that the instance is running and adds
// its tags. An operator aliases the node by account and tag; a workload
// under the alias gets its SVID. Then three refusals through the binaries:
// another account's genuine document, a document that differs from the
// signed one, and the same instance attesting a second time (trust on
// first use).
func TestAWSIIDNodeAttestationE2E(t *testing.T) {
	good := loadIID(t, "iid-278576220453-us-west-2")
	other := loadIID(t, "iid-883474662888-us-west-1")

	creds := awsfake.Credentials{AccessKeyID: "AKIAHALLMARKSERVER01", SecretAccessKey: "server-secret-access-key", SessionToken: "server-session"}
	ec2 := awsfake.NewEC2(t, creds, awsfake.Instance{
		ID: good.instanceID, Account: good.account, State: "running", ImageID: good.imageID, InstanceType: good.instanceType,
		VPCID: "vpc-0a1b2c3d", SubnetID: "subnet-0a1b2c3d", SecurityGroups: []string{"sg-0123abcd"},
		InstanceProfileARN: "arn:aws:iam::278576220453:instance-profile/payments-node",
		Tags:               map[string]string{"team": "payments", "Name": "payments-node-1"},
	})

	env := testenv.New(t)
	srv := env.StartServer(awsServerEnv(env.Dir, creds), testenv.WithHCL(`
node_attestor "aws_iid" {
  account_ids        = ["`+good.account+`"]
  describe_instances = true
  ec2_endpoint       = "`+ec2.URL+`"
}`))

	imds := awsfake.NewIMDS(t, good.imdsFiles())
	ag := startIIDAgent(env, srv, imds)
	agentID := "spiffe://example.org/agent/aws_iid/" + good.account + "/" + good.region + "/" + good.instanceID
	mustContainAll(t, "agent list", srv.MustCLI("agent", "list"),
		agentID,
		"Can re-attest     : false",
		"aws_iid:account_id:"+good.account,
		"aws_iid:region:"+good.region,
		"aws_iid:az:"+good.az,
		"aws_iid:instance_id:"+good.instanceID,
		"aws_iid:image_id:"+good.imageID,
		"aws_iid:instance_type:"+good.instanceType,
		"aws_iid:tag:team:payments",
		"aws_iid:vpc_id:vpc-0a1b2c3d",
		"aws_iid:subnet_id:subnet-0a1b2c3d",
		"aws_iid:sg_id:sg-0123abcd",
		"aws_iid:iam_instance_profile:arn:aws:iam::278576220453:instance-profile/payments-node",
	)
	if imds.TokenPuts.Load() == 0 || imds.Refused.Load() != 0 {
		t.Fatalf("IMDS: %d token PUTs, %d refused requests; want IMDSv2 only", imds.TokenPuts.Load(), imds.Refused.Load())
	}
	if ec2.Requests.Load() != 1 {
		t.Fatalf("EC2 DescribeInstances calls = %d, want 1", ec2.Requests.Load())
	}
	if !auditHas(t, srv, "accepted", `"attestor":"aws_iid"`, agentID, `"evidence.instance_id":"`+good.instanceID+`"`) {
		t.Fatal("no audited acceptance of the aws_iid attestation")
	}

	// Register by AWS facts: every node of the account tagged team=payments.
	const alias = "spiffe://example.org/nodes/aws/payments"
	srv.MustCLI("entry", "create", "-node", "-spiffeID", alias,
		"-selector", "aws_iid:account_id:"+good.account, "-selector", "aws_iid:tag:team:payments")
	const want = "spiffe://example.org/aws/payments-api"
	srv.CreateEntry(want, alias, "-selector", uidSelector())
	waitForSVID(t, ag.Addr(), want)

	// Refusal 1: a genuine document of an account that is not allowed. The
	// account check comes before any call to EC2.
	other2 := startIIDAgent(env, srv, awsfake.NewIMDS(t, other.imdsFiles()), testenv.NoWait())
	waitRefused(t, srv, other2, "account "+other.account+" is not in the allow-list")
	if ec2.Requests.Load() != 1 {
		t.Fatalf("EC2 was called for a refused account (%d calls)", ec2.Requests.Load())
	}

	// Refusal 2: the document sent beside the PKCS#7 is not the signed one
	// (another instance ID): identity fields come from signed bytes only.
	forged := good.imdsFiles()
	forged["dynamic/instance-identity/document"] = strings.Replace(good.document, good.instanceID, "i-0aaaaaaaaaaaaaaaa", 1)
	tampered := startIIDAgent(env, srv, awsfake.NewIMDS(t, forged), testenv.NoWait())
	waitRefused(t, srv, tampered, "document differs from the one signed in the PKCS#7")

	// Refusal 3: the same instance document again, from another agent.
	again := startIIDAgent(env, srv, awsfake.NewIMDS(t, good.imdsFiles()), testenv.NoWait())
	waitRefused(t, srv, again, "has already attested")

	testenv.WaitFor(t, 5*time.Second, "the refusals in the audit log", func() bool {
		return auditHas(t, srv, "rejected", `"attestor":"aws_iid"`, "not in the allow-list") &&
			auditHas(t, srv, "rejected", `"attestor":"aws_iid"`, "document differs") &&
			auditHas(t, srv, "rejected", `"attestor":"aws_iid"`, "already attested")
	})
	// The first agent is untouched by all this.
	if err := ag.Healthy(); err != nil {
		t.Fatalf("attested agent unhealthy: %v", err)
	}
}
