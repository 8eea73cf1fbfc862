package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestServerGolden: bundle count and localauthority in SPIRE's shapes
// (testdata/*.golden; -update rewrites them).
func TestServerGolden(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{name: "bundle_count_pretty", args: []string{"bundle", "count"}},
		{name: "bundle_count_json", args: []string{"bundle", "count", "-output", "json"}},
		{name: "bundle_show_json", args: []string{"bundle", "show", "-output", "json"}},
		{name: "bundle_list_json", args: []string{"bundle", "list", "-output", "json"}},
		{name: "token_generate_json", args: []string{"token", "generate", "-output", "json"}},
		{name: "agent_list_json", args: []string{"agent", "list", "-output", "json"}},
		{name: "agent_count_json", args: []string{"agent", "count", "-output", "json"}},
		{name: "agent_show_json", args: []string{"agent", "show", "-spiffeID", "spiffe://example.org/agent/tpm/abc", "-output", "json"}},
		{name: "agent_show_pretty", args: []string{"agent", "show", "-spiffeID", "spiffe://example.org/agent/tpm/abc"}},
		{name: "logger_get_pretty", args: []string{"logger", "get"}},
		{name: "logger_get_json", args: []string{"logger", "get", "-output", "json"}},
		{name: "localauthority_x509_show_pretty", args: []string{"localauthority", "x509", "show"}},
		{name: "localauthority_x509_show_json", args: []string{"localauthority", "x509", "show", "-output", "json"}},
		{name: "localauthority_x509_prepare_json", args: []string{"localauthority", "x509", "prepare", "-output", "json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, sock := startFakeAdmin(t)
			rc, out, errOut := runCLI(append(tt.args, "-socketPath", sock)...)
			if rc != 0 {
				t.Fatalf("exit %d: %s", rc, errOut)
			}
			checkGolden(t, tt.name, out)
		})
	}
}

// TestServerConfigFlags: SPIRE's run/validate flags that map onto the
// configuration file.
func TestServerConfigFlags(t *testing.T) {
	src, err := os.ReadFile("../../conf/server.hcl")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	plain := filepath.Join(dir, "server.hcl")
	if err := os.WriteFile(plain, src, 0o600); err != nil {
		t.Fatal(err)
	}
	withEnv := filepath.Join(dir, "env.hcl")
	expanded := strings.Replace(string(src), `trust_domain = "example.org"`, `trust_domain = "$HALLMARK_TEST_TD"`, 1)
	if expanded == string(src) {
		t.Fatal("conf/server.hcl has no trust_domain line to template")
	}
	if err := os.WriteFile(withEnv, []byte(expanded), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HALLMARK_TEST_TD", "env.example")
	tests := []struct {
		name    string
		args    []string
		wantErr string
		check   func(t *testing.T, f configFlags)
	}{
		{name: "data dir moves the default datastore", args: []string{"-config", plain, "-dataDir", "/var/lib/other", "-logLevel", "debug"},
			check: func(t *testing.T, f configFlags) {
				cfg, err := f.load()
				if err != nil {
					t.Fatal(err)
				}
				if cfg.DataDir != "/var/lib/other" || cfg.Datastore.Path != "/var/lib/other/datastore.sqlite3" || cfg.LogLevel != "debug" {
					t.Errorf("config: data_dir %q datastore %q level %q", cfg.DataDir, cfg.Datastore.Path, cfg.LogLevel)
				}
			}},
		{name: "expandEnv", args: []string{"-config", withEnv, "-expandEnv"},
			check: func(t *testing.T, f configFlags) {
				cfg, err := f.load()
				if err != nil {
					t.Fatal(err)
				}
				if cfg.TrustDomain.Name() != "env.example" {
					t.Errorf("trust domain %q", cfg.TrustDomain)
				}
			}},
		{name: "without expandEnv", args: []string{"-config", withEnv}, wantErr: "HALLMARK_TEST_TD"},
		{name: "bad level", args: []string{"-config", plain, "-logLevel", "chatty"}, wantErr: "-logLevel"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := newFlagSet("validate")
			f := defineConfigFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			if tt.wantErr != "" {
				if _, err := f.load(); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			tt.check(t, f)
		})
	}
}

func TestServerVersion(t *testing.T) {
	rc, out, _ := runCLI("-version")
	if rc != 0 || strings.TrimSpace(out) == "" || strings.Count(out, "\n") != 1 {
		t.Fatalf("exit %d, %q", rc, out)
	}
}

// TestFederationCommands: federation show finds one relationship, by
// name or ID, and names an unknown one.
func TestFederationCommands(t *testing.T) {
	_, sock := startFakeAdmin(t)
	if rc, out, errOut := runCLI("federation", "show", "-trustDomain", "spiffe://partner.test", "-socketPath", sock); rc != 0 ||
		!strings.Contains(out, "Trust domain      : partner.test") {
		t.Fatalf("federation show: exit %d %s%s", rc, out, errOut)
	}
	if rc, _, errOut := runCLI("federation", "show", "-trustDomain", "nobody.test", "-socketPath", sock); rc != 1 || !strings.Contains(errOut, "no federation relationship") {
		t.Fatalf("federation show unknown: exit %d %s", rc, errOut)
	}
}

// TestNewcomerErrors: a bad -ttl and a server refusal read as one plain
// sentence, never grpc-go's "rpc error: code = ... desc = ...".
func TestNewcomerErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "negative ttl", args: []string{"token", "generate", "-ttl", "-5"}, wantErr: "-ttl -5: want a number of seconds from 1 to 31536000"},
		{name: "ttl over a year", args: []string{"token", "generate", "-ttl", "31536001"}, wantErr: "-ttl 31536001"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, sock := startFakeAdmin(t)
			rc, _, errOut := runCLI(append(tt.args, "-socketPath", sock)...)
			if rc != 1 || !strings.Contains(errOut, tt.wantErr) || strings.Contains(errOut, "rpc error") {
				t.Fatalf("exit %d, stderr %q; want exit 1 and %q", rc, errOut, tt.wantErr)
			}
		})
	}
}

func TestPlainStatus(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{name: "status", err: status.Error(codes.InvalidArgument, "token TTL out of range"), want: "token TTL out of range (InvalidArgument)"},
		{name: "other", err: errors.New("dial: refused"), want: "dial: refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := plainStatus(tt.err); got == nil || got.Error() != tt.want {
				t.Fatalf("plainStatus = %v, want %q", got, tt.want)
			}
		})
	}
	if plainStatus(nil) != nil {
		t.Fatal("plainStatus(nil) != nil")
	}
}

// TestRunErrorPrintedOnce: a start-up failure logged to stderr is not
// printed a second time as "Error: ...".
func TestRunErrorPrintedOnce(t *testing.T) {
	src, err := os.ReadFile("../../conf/server.hcl")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "server.hcl")
	if err := os.WriteFile(path, src, 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	rc, _, errOut := runCLI("run", "-config", path, "-dataDir", filepath.Join(file, "data"))
	if rc != 1 || !strings.Contains(errOut, "Server failed to start") {
		t.Fatalf("exit %d, stderr %q; want exit 1 and the failure logged", rc, errOut)
	}
	if n := strings.Count(errOut, "not a directory"); n != 1 {
		t.Fatalf("the error is printed %d times, want once:\n%s", n, errOut)
	}
}
