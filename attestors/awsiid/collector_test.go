package awsiid_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/hallmarkid/hallmark/attestors"
	"github.com/hallmarkid/hallmark/attestors/awsiam/awsfake"
	"github.com/hallmarkid/hallmark/attestors/awsiid"
	"github.com/hallmarkid/hallmark/attestors/awsiid/ec2describe"
)

func imdsFiles(t testing.TB, f *fixture, doc string) map[string]string {
	return map[string]string{
		"dynamic/instance-identity/document":  doc,
		"dynamic/instance-identity/rsa2048":   wrap(base64.StdEncoding.EncodeToString(signPKCS7(t, []byte(doc), f.east2048, f.rsa2048["us-east-1"], p7opts{}))),
		"dynamic/instance-identity/signature": wrap(base64.StdEncoding.EncodeToString(signRSA1024(t, []byte(doc), f.east1024))),
	}
}

// TestCollectorIMDSv2 runs the agent half against a strict IMDSv2 fake and
// feeds its payload to the server half.
func TestCollectorIMDSv2(t *testing.T) {
	f := newFixture(t)
	md := awsfake.NewIMDS(t, imdsFiles(t, f, makeDoc(instanceID, "us-east-1")))

	// The fake behaves like IMDSv2: no token, no data.
	resp, err := http.Get(md.URL + "/latest/dynamic/instance-identity/document")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("IMDSv1 GET: %s", resp.Status)
	}
	req, _ := http.NewRequest(http.MethodPut, md.URL+"/latest/api/token", nil)
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("token PUT without TTL: %s", resp.Status)
	}

	c, err := awsiid.NewCollector(awsiid.AgentConfig{IMDSEndpoint: md.URL}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	payload, err := c.Payload(context.Background(), attestors.CollectRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if md.TokenPuts.Load() == 0 || md.Gets.Load() != 3 {
		t.Errorf("token PUTs %d, GETs %d", md.TokenPuts.Load(), md.Gets.Load())
	}
	if _, err := c.Answer(context.Background(), []byte("x")); err == nil {
		t.Error("Answer succeeded")
	}
	for _, cfg := range []awsiid.ServerConfig{{}, {AllowRSA1024Signature: true}} {
		v, err := awsiid.NewVerifier(cfg, quietLog(), awsiid.WithRegionCertificates(f.rsa2048, f.rsa1024))
		if err != nil {
			t.Fatal(err)
		}
		res, err := v.Verify(context.Background(), attestors.VerifyRequest{Payload: payload, TrustDomain: td})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(res.AgentID.String(), "/agent/aws_iid/123456789012/us-east-1/"+instanceID) {
			t.Errorf("agent ID %s", res.AgentID)
		}
	}
}

func TestCollectorErrors(t *testing.T) {
	f := newFixture(t)
	files := imdsFiles(t, f, makeDoc(instanceID, "us-east-1"))
	delete(files, "dynamic/instance-identity/rsa2048")
	tests := []struct {
		name    string
		files   map[string]string
		wantErr string
	}{
		{name: "no rsa2048", files: files, wantErr: "instance-identity/rsa2048"},
		{name: "no document", files: map[string]string{}, wantErr: "instance-identity/document"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			md := awsfake.NewIMDS(t, tc.files)
			c, _ := awsiid.NewCollector(awsiid.AgentConfig{IMDSEndpoint: md.URL}, quietLog())
			_, err := c.Payload(context.Background(), attestors.CollectRequest{})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestDescribeInstances covers the optional EC2 lookup against a fake that
// answers only SigV4-signed DescribeInstances calls.
func TestDescribeInstances(t *testing.T) {
	f := newFixture(t)
	creds := awsfake.Credentials{AccessKeyID: "AKIDSERVER", SecretAccessKey: "server-secret"}
	running := awsfake.Instance{
		ID: instanceID, Account: "123456789012", State: "running", ImageID: "ami-0abcdef1234567890",
		InstanceType: "m5.large", VPCID: "vpc-0a1b2c3d", SubnetID: "subnet-0a1b2c3d",
		InstanceProfileARN: "arn:aws:iam::123456789012:instance-profile/web",
		SecurityGroups:     []string{"sg-0123abcd"},
		Tags:               map[string]string{"env": "prod", "bad": "line\nbreak"},
	}
	stopped := running
	stopped.ID = "i-0fedcba9876543210"
	stopped.State = "stopped"
	ec2 := awsfake.NewEC2(t, creds, running, stopped)

	awsCfg := func(c awsfake.Credentials) aws.Config {
		return aws.Config{
			Region:      "us-east-1",
			Credentials: credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, ""),
		}
	}
	tests := []struct {
		name     string
		instance string
		creds    awsfake.Credentials
		wantSel  []string
		wantErr  string
	}{
		{name: "running", instance: instanceID, creds: creds, wantSel: []string{
			"aws_iid:iam_instance_profile:arn:aws:iam::123456789012:instance-profile/web",
			"aws_iid:sg_id:sg-0123abcd",
			"aws_iid:subnet_id:subnet-0a1b2c3d",
			"aws_iid:tag:env:prod",
			"aws_iid:vpc_id:vpc-0a1b2c3d",
		}},
		{name: "instance not running", instance: stopped.ID, creds: creds, wantErr: "is stopped, not running"},
		{name: "instance unknown to EC2", instance: "i-0aaaaaaaaaaaaaaaa", creds: creds, wantErr: "InvalidInstanceID.NotFound"},
		{name: "server credentials rejected", instance: instanceID, creds: awsfake.Credentials{AccessKeyID: "AKIDSERVER", SecretAccessKey: "wrong"}, wantErr: "SignatureDoesNotMatch"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := awsCfg(tc.creds)
			d, err := ec2describe.New(context.Background(), ec2describe.Config{AWS: &cfg, Endpoint: ec2.URL})
			if err != nil {
				t.Fatal(err)
			}
			v, err := awsiid.NewVerifier(awsiid.ServerConfig{DescribeInstances: true, EC2Endpoint: ec2.URL}, quietLog(),
				awsiid.WithRegionCertificates(f.rsa2048, f.rsa1024), awsiid.WithInstanceDescriber(d))
			if err != nil {
				t.Fatal(err)
			}
			res, err := v.Verify(context.Background(), attestors.VerifyRequest{Payload: f.payload(t, makeDoc(tc.instance, "us-east-1"), p7opts{}), TrustDomain: td})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]bool{}
			for _, s := range res.Selectors {
				got[s.String()] = true
			}
			for _, s := range tc.wantSel {
				if !got[s] {
					t.Errorf("selector %s missing from %v", s, res.Selectors)
				}
			}
			for s := range got {
				if strings.Contains(s, "bad") {
					t.Errorf("selector with a control character: %q", s)
				}
			}
		})
	}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     awsiid.ServerConfig
		wantErr string
	}{
		{name: "defaults"},
		{name: "bad account", cfg: awsiid.ServerConfig{AccountIDs: []string{"12345"}}, wantErr: "12-digit"},
		{name: "empty account list", cfg: awsiid.ServerConfig{AccountIDs: []string{}}, wantErr: "account_ids is empty"},
		{name: "endpoint without describe", cfg: awsiid.ServerConfig{EC2Endpoint: "http://127.0.0.1:1"}, wantErr: "describe_instances is off"},
		{name: "describe without an EC2 client", cfg: awsiid.ServerConfig{DescribeInstances: true}, wantErr: "no EC2 client"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := awsiid.NewVerifier(tc.cfg, nil)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
