package awsiam_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/attestors"
	"github.com/hallmarkid/hallmark/attestors/awsiam"
	"github.com/hallmarkid/hallmark/attestors/awsiam/awsfake"
)

func TestECSHintsAndRenewal(t *testing.T) {
	meta := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v4/abc/task" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{
			"Cluster":    "arn:aws:ecs:us-east-1:123456789012:cluster/prod",
			"TaskARN":    "arn:aws:ecs:us-east-1:123456789012:task/prod/" + session,
			"Family":     "web",
			"Containers": []any{},
		})
	}))
	t.Cleanup(meta.Close)
	t.Setenv("ECS_CONTAINER_METADATA_URI_V4", meta.URL+"/v4/abc")

	sts := awsfake.NewSTS(t, taskRole)
	c, err := awsiam.NewCollector(awsiam.AgentConfig{TrustDomain: td, Region: "us-east-1", ECSTaskMetadata: true}, quietLog(), awsiam.WithCredentials(staticCreds(agentCreds)))
	if err != nil {
		t.Fatal(err)
	}
	payload, err := c.Payload(context.Background(), attestors.CollectRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, hints := range []bool{false, true} {
		v, err := awsiam.NewVerifier(awsiam.ServerConfig{AccountIDs: []string{account}, STSURLOverride: sts.URL, ECSHints: hints}, quietLog())
		if err != nil {
			t.Fatal(err)
		}
		res, err := v.Verify(context.Background(), attestors.VerifyRequest{Payload: payload, TrustDomain: td, Challenge: c.Answer})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range res.Selectors {
			got = append(got, s.String())
		}
		want := "aws_iam:account:123456789012 aws_iam:role:task-role aws_iam:session:" + session
		if hints {
			want = "aws_ecs_hint:cluster:arn:aws:ecs:us-east-1:123456789012:cluster/prod aws_ecs_hint:family:web " +
				"aws_ecs_hint:task_arn:arn:aws:ecs:us-east-1:123456789012:task/prod/" + session + " " + want
		}
		if strings.Join(got, " ") != want {
			t.Errorf("hints %v: selectors\n%s\nwant\n%s", hints, strings.Join(got, " "), want)
		}
		// Renewal must yield the agent's current ID.
		if _, err := v.Verify(context.Background(), attestors.VerifyRequest{Payload: payload, TrustDomain: td, Challenge: c.Answer, Renewal: true, CurrentID: res.AgentID}); err != nil {
			t.Fatalf("renewal: %v", err)
		}
		other := spiffeid.RequireFromString("spiffe://example.org/agent/aws_iam/123456789012/task-role/other")
		if _, err := v.Verify(context.Background(), attestors.VerifyRequest{Payload: payload, TrustDomain: td, Challenge: c.Answer, Renewal: true, CurrentID: other}); err == nil || !strings.Contains(err.Error(), "renewal") {
			t.Fatalf("renewal to another ID: %v", err)
		}
	}
}

func TestCollectorErrors(t *testing.T) {
	c, err := awsiam.NewCollector(awsiam.AgentConfig{TrustDomain: td, Region: "us-east-1"}, quietLog(), awsiam.WithCredentials(staticCreds(agentCreds)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Answer(context.Background(), []byte("short")); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Errorf("short challenge: %v", err)
	}
	if _, err := awsiam.NewCollector(awsiam.AgentConfig{TrustDomain: td, Region: "us-east-1", STSHost: "sts.eu-west-1.amazonaws.com"}, quietLog()); err == nil {
		t.Error("host in another region accepted")
	}
	if _, err := awsiam.NewCollector(awsiam.AgentConfig{Region: "us-east-1"}, quietLog()); err == nil || !strings.Contains(err.Error(), "no trust domain") {
		t.Errorf("no trust domain: %v", err)
	}
	if _, err := awsiam.NewCollector(awsiam.AgentConfig{TrustDomain: td, Region: "us-east-1", ServerID: "a\tb"}, quietLog()); err == nil || !strings.Contains(err.Error(), "server_id") {
		t.Errorf("bad server_id: %v", err)
	}
	t.Setenv("ECS_CONTAINER_METADATA_URI_V4", "")
	c, _ = awsiam.NewCollector(awsiam.AgentConfig{TrustDomain: td, Region: "us-east-1", ECSTaskMetadata: true}, quietLog())
	if _, err := c.Payload(context.Background(), attestors.CollectRequest{}); err == nil || !strings.Contains(err.Error(), "ECS_CONTAINER_METADATA_URI_V4") {
		t.Errorf("no metadata URI: %v", err)
	}
}

func TestVerifyRequest(t *testing.T) {
	v, err := awsiam.NewVerifier(awsiam.ServerConfig{AccountIDs: []string{account}}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	echo := func(_ context.Context, b []byte) ([]byte, error) { return b, nil }
	tests := []struct {
		name    string
		req     attestors.VerifyRequest
		wantErr string
	}{
		{name: "bad hello", req: attestors.VerifyRequest{Payload: []byte(`{"version":1,"x":1}`), Challenge: echo}, wantErr: "unknown field"},
		{name: "wrong version", req: attestors.VerifyRequest{Payload: []byte(`{"version":3}`), Challenge: echo}, wantErr: "unsupported version"},
		{name: "no challenge channel", req: attestors.VerifyRequest{Payload: []byte(`{"version":1}`)}, wantErr: "no challenge channel"},
		{name: "answer not JSON", req: attestors.VerifyRequest{Payload: []byte(`{"version":1}`), Challenge: echo}, wantErr: "signed request"},
		{name: "too many headers", req: attestors.VerifyRequest{Payload: []byte(`{"version":1}`), Challenge: func(context.Context, []byte) ([]byte, error) {
			return json.Marshal(awsiam.SignedRequest{Headers: make([][2]string, 17)})
		}}, wantErr: "more than 16"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.TrustDomain = td
			_, err := v.Verify(context.Background(), tc.req)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     awsiam.ServerConfig
		wantErr string
	}{
		{name: "minimal", cfg: awsiam.ServerConfig{AccountIDs: []string{account}}},
		{name: "no accounts", wantErr: "account_ids is required"},
		{name: "bad account", cfg: awsiam.ServerConfig{AccountIDs: []string{"1"}}, wantErr: "12-digit"},
		{name: "empty roles", cfg: awsiam.ServerConfig{AccountIDs: []string{account}, RoleNames: []string{}}, wantErr: "role_names is empty"},
		{name: "bad role", cfg: awsiam.ServerConfig{AccountIDs: []string{account}, RoleNames: []string{"a/b"}}, wantErr: "role_names"},
		{name: "non-STS host", cfg: awsiam.ServerConfig{AccountIDs: []string{account}, STSHosts: []string{"evil.example.com"}}, wantErr: "sts_hosts"},
		{name: "STS host lookalike", cfg: awsiam.ServerConfig{AccountIDs: []string{account}, STSHosts: []string{"sts.amazonaws.com.evil.example"}}, wantErr: "sts_hosts"},
		{name: "bad skew", cfg: awsiam.ServerConfig{AccountIDs: []string{account}, ClockSkew: "1h"}, wantErr: "clock_skew"},
		{name: "bad override", cfg: awsiam.ServerConfig{AccountIDs: []string{account}, STSURLOverride: "ftp://x"}, wantErr: "sts_url_override"},
		{name: "server_id", cfg: awsiam.ServerConfig{AccountIDs: []string{account}, ServerID: "hallmark-prod-eu"}},
		{name: "server_id with a space", cfg: awsiam.ServerConfig{AccountIDs: []string{account}, ServerID: "prod eu"}, wantErr: "server_id"},
		{name: "server_id not ASCII", cfg: awsiam.ServerConfig{AccountIDs: []string{account}, ServerID: "prodé"}, wantErr: "server_id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := awsiam.NewVerifier(tc.cfg, nil)
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
