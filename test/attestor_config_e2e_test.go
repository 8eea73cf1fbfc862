package test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/test/testenv"
)

// A bad aws_iid, aws_iam, aws_nitro or k8s_psat block stops the binary at
// start with the block's file:line and the reason, never a daemon that
// runs without the attestor or with it half configured.
func TestBadIIDIAMNitroPSATBlocksStopTheBinaries(t *testing.T) {
	bin := testenv.Binaries(t)
	tests := []struct {
		name    string
		binary  string
		block   string
		wantErr string
	}{
		{name: "server aws_iid misspelt key", binary: "hallmark-server", block: `node_attestor "aws_iid" {
  acount_ids = ["123456789012"]
}`, wantErr: `Did you mean "account_ids"?`},
		{name: "server aws_iid malformed account", binary: "hallmark-server", block: `node_attestor "aws_iid" {
  account_ids = ["12345"]
}`, wantErr: `awsiid: config: account_ids: "12345" is not a 12-digit account ID`},
		{name: "server aws_iid ec2_endpoint alone", binary: "hallmark-server", block: `node_attestor "aws_iid" {
  ec2_endpoint = "https://vpce.example"
}`, wantErr: "ec2_endpoint is set but describe_instances is off"},
		{name: "server aws_iam without accounts", binary: "hallmark-server", block: `node_attestor "aws_iam" {
  role_names = ["task"]
}`, wantErr: `The argument "account_ids" is required`},
		{name: "server aws_iam foreign STS host", binary: "hallmark-server", block: `node_attestor "aws_iam" {
  account_ids = ["123456789012"]
  sts_hosts   = ["sts.attacker.example"]
}`, wantErr: `sts_hosts: "sts.attacker.example" is not an STS host`},
		{name: "server aws_nitro short PCR", binary: "hallmark-server", block: `node_attestor "aws_nitro" {
  pcr0 = ["abcd"]
}`, wantErr: `pcr0: "abcd" is not 96 hex digits`},
		{name: "server k8s_psat two validation modes", binary: "hallmark-server", block: `node_attestor "k8s_psat" {
  cluster "c" {
    service_account_allow_list = ["ns:sa"]
    jwks_file        = "/nonexistent/jwks.json"
    kube_config_file = "/nonexistent/kubeconfig"
  }
}`, wantErr: "set exactly one of kube_config_file, in_cluster, jwks_url, jwks_file"},
		{name: "server k8s_psat plain HTTP JWKS", binary: "hallmark-server", block: `node_attestor "k8s_psat" {
  cluster "c" {
    service_account_allow_list = ["ns:sa"]
    jwks_url = "http://oidc.example/keys"
    issuer   = "http://oidc.example"
  }
}`, wantErr: "must be an https URL"},
		{name: "server k8s_psat unreadable kubeconfig", binary: "hallmark-server", block: `node_attestor "k8s_psat" {
  cluster "c" {
    service_account_allow_list = ["ns:sa"]
    kube_config_file = "/nonexistent/kubeconfig"
  }
}`, wantErr: "/nonexistent/kubeconfig"},
		{name: "agent aws_iid misspelt key", binary: "hallmark-agent", block: `node_attestor "aws_iid" {
  imds = "http://127.0.0.1:1"
}`, wantErr: "Unsupported argument"},
		{name: "agent aws_iam host of another region", binary: "hallmark-agent", block: `node_attestor "aws_iam" {
  sts_region = "us-east-1"
  sts_host   = "sts.eu-west-1.amazonaws.com"
}`, wantErr: `does not serve region "us-east-1"`},
		{name: "agent aws_nitro misspelt key", binary: "hallmark-agent", block: `node_attestor "aws_nitro" {
  devise = "/dev/nsm"
}`, wantErr: `Did you mean "device"?`},
		{name: "agent k8s_psat without cluster", binary: "hallmark-agent", block: `node_attestor "k8s_psat" {
  token_path = "/var/run/secrets/tokens/hallmark-agent"
}`, wantErr: `The argument "cluster" is required`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir, err := os.MkdirTemp("", "hmcfg")
			must(t, err)
			t.Cleanup(func() { os.RemoveAll(dir) })
			var top string
			if tc.binary == "hallmark-server" {
				top = fmt.Sprintf(`server {
  trust_domain = "example.org"
  bind_address = "127.0.0.1"
  bind_port    = %d
  data_dir     = %q
  socket_path  = %q
}
`, testenv.FreePort(t), filepath.Join(dir, "data"), filepath.Join(dir, "admin", "api.sock"))
			} else {
				top = fmt.Sprintf(`agent {
  trust_domain       = "example.org"
  server_address     = "127.0.0.1:1"
  insecure_bootstrap = true
  data_dir           = %q
  socket_path        = %q
}
`, filepath.Join(dir, "data"), filepath.Join(dir, "public", "api.sock"))
			}
			cfg := filepath.Join(dir, "conf.hcl")
			must(t, os.WriteFile(cfg, []byte(top+tc.block+"\n"), 0o600))
			line := strings.Count(top, "\n") + 1

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, filepath.Join(bin, tc.binary), "run", "-config", cfg).CombinedOutput()
			if ctx.Err() != nil {
				t.Fatalf("%s kept running with a bad block:\n%s", tc.binary, out)
			}
			if err == nil {
				t.Fatalf("%s exited 0 with a bad block:\n%s", tc.binary, out)
			}
			pos := fmt.Sprintf("conf.hcl:%d", line)
			// The error is printed once, as the log line's quoted error
			// attribute (slog's text format escapes its quotes).
			text := strings.ReplaceAll(string(out), `\"`, `"`)
			if !strings.Contains(text, pos) || !strings.Contains(text, tc.wantErr) {
				t.Fatalf("output lacks %q and %q:\n%s", pos, tc.wantErr, out)
			}
		})
	}
}
