package awsiam_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/attestors/awsiam"
	"github.com/hallmarkid/hallmark/attestors/awsiam/awsfake"
)

// credentialEnv is every variable the default credential sources read.
var credentialEnv = []string{
	"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
	"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME",
	"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
	"AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
	"AWS_EC2_METADATA_SERVICE_ENDPOINT", "AWS_EC2_METADATA_DISABLED",
}

// TestDefaultCredentials signs with each credential source the collector
// finds in its environment, served by loopback fakes.
func TestDefaultCredentials(t *testing.T) {
	expires := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("pod-identity-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	container := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/creds" || r.Header.Get("Authorization") != "pod-identity-token" {
			http.Error(w, `{"code":"AccessDenied","message":"no"}`, http.StatusForbidden)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"AccessKeyId": "AKIDTASK", "SecretAccessKey": "task-secret",
			"Token": "task-session", "Expiration": expires})
	}))
	t.Cleanup(container.Close)
	imds := awsfake.NewIMDS(t, map[string]string{
		"meta-data/iam/security-credentials/": "node-role",
		"meta-data/iam/security-credentials/node-role": `{"Code":"Success","Type":"AWS-HMAC","AccessKeyId":"AKIDNODE",` +
			`"SecretAccessKey":"node-secret","Token":"node-session","Expiration":"` + expires + `","LastUpdated":"` + expires + `"}`,
	})

	tests := []struct {
		name      string
		env       map[string]string
		wantKeyID string
		wantToken bool
		wantErr   string
	}{
		{name: "environment keys", env: map[string]string{"AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "env-secret"},
			wantKeyID: "AKIDENV"},
		{name: "environment keys win over the instance role", env: map[string]string{"AWS_ACCESS_KEY_ID": "AKIDENV",
			"AWS_SECRET_ACCESS_KEY": "env-secret", "AWS_SESSION_TOKEN": "s", "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.URL},
			wantKeyID: "AKIDENV", wantToken: true},
		{name: "container credentials with a token file", env: map[string]string{
			"AWS_CONTAINER_CREDENTIALS_FULL_URI": container.URL + "/creds", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": tokenFile},
			wantKeyID: "AKIDTASK", wantToken: true},
		{name: "container credentials without the token", env: map[string]string{
			"AWS_CONTAINER_CREDENTIALS_FULL_URI": container.URL + "/creds"}, wantErr: "credentials"},
		{name: "container credentials over plain HTTP to another host", env: map[string]string{
			"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://10.1.2.3/creds"}, wantErr: "plain HTTP only"},
		{name: "container credentials URI of another scheme", env: map[string]string{
			"AWS_CONTAINER_CREDENTIALS_FULL_URI": "file:///etc/creds"}, wantErr: "neither http nor https"},
		{name: "web identity without a role", env: map[string]string{"AWS_WEB_IDENTITY_TOKEN_FILE": tokenFile},
			wantErr: "AWS_ROLE_ARN is not"},
		{name: "instance role", env: map[string]string{"AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.URL},
			wantKeyID: "AKIDNODE", wantToken: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range credentialEnv {
				t.Setenv(k, tt.env[k])
			}
			c, err := awsiam.NewCollector(awsiam.AgentConfig{TrustDomain: td, Region: "us-east-1"}, quietLog())
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			out, err := c.Answer(ctx, []byte("0123456789abcdef0123"))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var sr awsiam.SignedRequest
			if err := json.Unmarshal(out, &sr); err != nil {
				t.Fatal(err)
			}
			h := map[string]string{}
			for _, kv := range sr.Headers {
				h[kv[0]] = kv[1]
			}
			if !strings.Contains(h["Authorization"], "Credential="+tt.wantKeyID+"/") {
				t.Errorf("Authorization %q, want credential %s", h["Authorization"], tt.wantKeyID)
			}
			if _, ok := h["X-Amz-Security-Token"]; ok != tt.wantToken {
				t.Errorf("X-Amz-Security-Token present = %v, want %v", ok, tt.wantToken)
			}
		})
	}
}
