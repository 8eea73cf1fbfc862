package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/agent/config"
	"github.com/hallmarkid/hallmark/internal/hclconf"
)

const joinTokenBlock = `node_attestor "join_token" {}`

// agt returns a file whose agent block holds the required settings on
// lines 2-5, then extra, one setting per line from line 6, then rest.
func agt(extra string, rest ...string) string {
	s := "agent {\n  trust_domain = \"example.org\"\n  server_address = \"127.0.0.1:8081\"\n" +
		"  trust_bundle_path = \"/etc/hallmark/bundle.pem\"\n  data_dir = \"/var/lib/hallmark-agent\"\n"
	if extra != "" {
		s += "  " + strings.ReplaceAll(extra, "\n", "\n  ") + "\n"
	}
	s += "}\n"
	for _, r := range rest {
		s += r + "\n"
	}
	return s
}

// bare returns an agent block with exactly the given settings, one per
// line from line 2, and a join_token node attestor.
func bare(settings ...string) string {
	s := "agent {\n"
	for _, v := range settings {
		s += "  " + v + "\n"
	}
	return s + "}\n" + joinTokenBlock + "\n"
}

// addr is the minimal file with server_address (line 3) set to a.
func addr(a string) string {
	return bare(`trust_domain = "example.org"`, `server_address = `+a,
		`trust_bundle_path = "/etc/hallmark/bundle.pem"`, `data_dir = "/var/lib/hallmark-agent"`)
}

func defaults() config.Config {
	return config.Config{
		TrustDomain:     spiffeid.RequireTrustDomainFromString("example.org"),
		ServerAddress:   "127.0.0.1:8081",
		TrustBundlePath: "/etc/hallmark/bundle.pem",
		DataDir:         "/var/lib/hallmark-agent",
		SocketPath:      config.DefaultSocketPathFor(os.Geteuid()),
		LogLevel:        "info",
		LogFormat:       "text",
		// The bootstrap bundle's encoding.
		TrustBundleFormat: "pem",
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name          string
		src           string
		opts          []config.Option
		want          func(c *config.Config) // changes to defaults()
		wantNode      string
		wantNodeLine  int
		wantWorkloads []string
		wantErr       []string
	}{
		{name: "minimal", src: agt("", joinTokenBlock), wantNode: "join_token", wantNodeLine: 7},
		{name: "server_address hostname", src: addr(`"hallmark.example.org:443"`),
			want: func(c *config.Config) { c.ServerAddress = "hallmark.example.org:443" }, wantNode: "join_token", wantNodeLine: 7},
		{name: "server_address ipv6", src: addr(`"[::1]:8081"`),
			want: func(c *config.Config) { c.ServerAddress = "[::1]:8081" }, wantNode: "join_token", wantNodeLine: 7},
		{name: "insecure_bootstrap without bundle", src: bare(`trust_domain = "example.org"`, `server_address = "127.0.0.1:8081"`,
			`insecure_bootstrap = true`, `data_dir = "/var/lib/hallmark-agent"`),
			want: func(c *config.Config) { c.TrustBundlePath, c.InsecureBootstrap = "", true }, wantNode: "join_token", wantNodeLine: 7},
		{name: "insecure_bootstrap false with bundle", src: agt(`insecure_bootstrap = false`, joinTokenBlock), wantNode: "join_token", wantNodeLine: 8},
		{name: "insecure_bootstrap with empty bundle", src: bare(`trust_domain = "example.org"`, `server_address = "127.0.0.1:8081"`,
			`insecure_bootstrap = true`, `trust_bundle_path = ""`, `data_dir = "/var/lib/hallmark-agent"`),
			want: func(c *config.Config) { c.TrustBundlePath, c.InsecureBootstrap = "", true }, wantNode: "join_token", wantNodeLine: 8},
		{name: "trust_bundle_url spiffe", src: bare(`trust_domain = "example.org"`, `server_address = "127.0.0.1:8081"`,
			`trust_bundle_url = "https://bundle.example.org/td.json"`, `trust_bundle_format = "spiffe"`, `data_dir = "/var/lib/hallmark-agent"`),
			want: func(c *config.Config) {
				c.TrustBundlePath, c.TrustBundleURL, c.TrustBundleFormat = "", "https://bundle.example.org/td.json", "spiffe"
			}, wantNode: "join_token", wantNodeLine: 8},
		{name: "trust_bundle_url loopback http allowed", src: bare(`trust_domain = "example.org"`, `server_address = "127.0.0.1:8081"`,
			`trust_bundle_url = "http://[::1]:8080/b.pem"`, `trust_bundle_url_allow_loopback_http = true`, `data_dir = "/var/lib/hallmark-agent"`),
			want: func(c *config.Config) {
				c.TrustBundlePath, c.TrustBundleURL, c.TrustBundleURLAllowLoopbackHTTP = "", "http://[::1]:8080/b.pem", true
			}, wantNode: "join_token", wantNodeLine: 8},
		{name: "socket paths", src: agt("socket_path = \"/run/hallmark/api.sock\"\nadmin_socket_path = \"/run/hallmark/admin.sock\"", joinTokenBlock),
			want: func(c *config.Config) {
				c.SocketPath, c.AdminSocketPath = "/run/hallmark/api.sock", "/run/hallmark/admin.sock"
			}, wantNode: "join_token", wantNodeLine: 9},
		{name: "empty admin_socket_path means none", src: agt(`admin_socket_path = ""`, joinTokenBlock), wantNode: "join_token", wantNodeLine: 8},
		{name: "logging", src: agt("log_level = \"warn\"\nlog_format = \"JSON\"\nlog_file = \"/var/log/a.log\"", joinTokenBlock),
			want:     func(c *config.Config) { c.LogLevel, c.LogFormat, c.LogFile = "warn", "json", "/var/log/a.log" },
			wantNode: "join_token", wantNodeLine: 10},
		{name: "join_token implies node attestor", src: agt(`join_token = "abc-123"`),
			want: func(c *config.Config) { c.JoinToken = "abc-123" }, wantNode: "join_token", wantNodeLine: 1},
		{name: "join_token with join_token block", src: agt(`join_token = "abc-123"`, joinTokenBlock),
			want: func(c *config.Config) { c.JoinToken = "abc-123" }, wantNode: "join_token", wantNodeLine: 8},
		{name: "option join token implies node attestor", src: agt(""), opts: []config.Option{config.WithJoinToken("flag-tok")},
			want: func(c *config.Config) { c.JoinToken = "flag-tok" }, wantNode: "join_token", wantNodeLine: 1},
		{name: "option overrides file token", src: agt(`join_token = "file-tok"`), opts: []config.Option{config.WithJoinToken("flag-tok")},
			want: func(c *config.Config) { c.JoinToken = "flag-tok" }, wantNode: "join_token", wantNodeLine: 1},
		{name: "empty option changes nothing", src: agt(`join_token = "file-tok"`), opts: []config.Option{config.WithJoinToken("")},
			want: func(c *config.Config) { c.JoinToken = "file-tok" }, wantNode: "join_token", wantNodeLine: 1},
		{name: "empty join_token is unset", src: agt(`join_token = ""`, `node_attestor "tpm" {}`), wantNode: "tpm", wantNodeLine: 8},
		{name: "other node attestor", src: agt("", `node_attestor "tpm" {
  ek_ca_path = "/x"
}`), wantNode: "tpm", wantNodeLine: 7},
		{name: "workload attestors in file order", src: agt("", joinTokenBlock, `workload_attestor "unix" {
  discover_workload_path = false
}`, `workload_attestor "k8s" {}`), wantNode: "join_token", wantNodeLine: 7, wantWorkloads: []string{"unix", "k8s"}},

		// Syntax and structure.
		{name: "syntax error", src: "agent {\n  data_dir = \"x\n}\n", wantErr: []string{"agent.hcl:2,"}},
		{name: "empty file", src: "", wantErr: []string{"agent.hcl:1,1-1: Missing agent block"}},
		{name: "duplicate agent block", src: agt("", joinTokenBlock, "agent {}"),
			wantErr: []string{"agent.hcl:8,1-6: Duplicate agent block; Only one agent block is allowed. Another was defined at agent.hcl:1."}},
		// join_token is implied even without a token: a restarted agent
		// runs on its saved SVID.
		{name: "no node attestor", src: agt(""), wantNode: "join_token", wantNodeLine: 1},
		{name: "two node attestors", src: agt("", joinTokenBlock, `node_attestor "tpm" {}`),
			wantErr: []string{`agent.hcl:8,1-20: Duplicate node_attestor block; An agent has exactly one node attestor; "join_token" was already chosen at agent.hcl:7.`}},
		{name: "same node attestor twice", src: agt("", joinTokenBlock, joinTokenBlock),
			wantErr: []string{`agent.hcl:8,1-27: Duplicate node_attestor block; Only one node_attestor "join_token" block is allowed.`}},
		{name: "duplicate workload attestor", src: agt("", joinTokenBlock, `workload_attestor "unix" {}`, `workload_attestor "unix" {}`),
			wantErr: []string{`agent.hcl:9,1-25: Duplicate workload_attestor block`}},
		{name: "workload attestor bad kind", src: agt("", joinTokenBlock, `workload_attestor "" {}`),
			wantErr: []string{`agent.hcl:8,19-21: Invalid workload_attestor kind`}},
		{name: "node attestor bad kind only", src: agt("", `node_attestor "9tpm" {}`),
			wantErr: []string{"config: agent.hcl:7,15-21: Invalid node_attestor kind"}},
		{name: "unknown key in agent", src: agt(`bogus = 1`, joinTokenBlock),
			wantErr: []string{`agent.hcl:6,3-8: Unsupported argument; An argument named "bogus" is not expected here.`}},
		{name: "misspelled key suggests", src: agt(`join_tokn = "x"`, joinTokenBlock), wantErr: []string{`agent.hcl:6,3-12`, `Did you mean "join_token"?`}},
		{name: "unknown top-level block", src: agt("", joinTokenBlock, "server {}"), wantErr: []string{`agent.hcl:8,1-7: Unsupported block type`}},
		{name: "unknown key in top level", src: agt("", joinTokenBlock, `x = 1`), wantErr: []string{`agent.hcl:8,1-2: Unsupported argument`}},

		// Required settings.
		{name: "missing trust_domain", src: bare(`server_address = "127.0.0.1:8081"`, `trust_bundle_path = "/b"`, `data_dir = "/d"`),
			wantErr: []string{`agent.hcl:1,7-7: Missing required argument; The argument "trust_domain" is required`}},
		{name: "missing server_address", src: bare(`trust_domain = "example.org"`, `trust_bundle_path = "/b"`, `data_dir = "/d"`),
			wantErr: []string{`agent.hcl:1,7-7: Missing required argument; The argument "server_address" is required`}},
		{name: "missing data_dir", src: bare(`trust_domain = "example.org"`, `server_address = "127.0.0.1:8081"`, `trust_bundle_path = "/b"`),
			wantErr: []string{`agent.hcl:1,7-7: Missing required argument; The argument "data_dir" is required`}},
		{name: "missing trust_bundle_path", src: bare(`trust_domain = "example.org"`, `server_address = "127.0.0.1:8081"`, `data_dir = "/d"`),
			wantErr: []string{`agent.hcl:1,7-7: Missing required argument; The argument "trust_bundle_path" is required unless insecure_bootstrap = true (or trust_bundle_url is set).`}},
		{name: "trust_bundle_url and path", src: bare(`trust_domain = "example.org"`, `server_address = "127.0.0.1:8081"`, `data_dir = "/d"`,
			`trust_bundle_path = "/b"`, `trust_bundle_url = "https://example.org/b.pem"`),
			wantErr: []string{`Conflicting settings; trust_bundle_path and trust_bundle_url are mutually exclusive`}},
		{name: "trust_bundle_url and insecure", src: bare(`trust_domain = "example.org"`, `server_address = "127.0.0.1:8081"`, `data_dir = "/d"`,
			`insecure_bootstrap = true`, `trust_bundle_url = "https://example.org/b.pem"`),
			wantErr: []string{`insecure_bootstrap = true and trust_bundle_url are mutually exclusive`}},
		{name: "trust_bundle_url plain http", src: bare(`trust_domain = "example.org"`, `server_address = "127.0.0.1:8081"`, `data_dir = "/d"`,
			`trust_bundle_url = "http://example.org/b.pem"`),
			wantErr: []string{`must be https: plain http is accepted only to a loopback address`}},
		{name: "trust_bundle_url remote http even when allowed", src: bare(`trust_domain = "example.org"`, `server_address = "127.0.0.1:8081"`, `data_dir = "/d"`,
			`trust_bundle_url = "http://10.0.0.1/b.pem"`, `trust_bundle_url_allow_loopback_http = true`),
			wantErr: []string{`must be https: plain http is accepted only to a loopback address`}},
		{name: "trust_bundle_url loopback http not allowed", src: bare(`trust_domain = "example.org"`, `server_address = "127.0.0.1:8081"`, `data_dir = "/d"`,
			`trust_bundle_url = "http://127.0.0.1:8080/b.pem"`),
			wantErr: []string{`set trust_bundle_url_allow_loopback_http = true`}},
		{name: "trust_bundle_url with credentials", src: bare(`trust_domain = "example.org"`, `server_address = "127.0.0.1:8081"`, `data_dir = "/d"`,
			`trust_bundle_url = "https://u:p@example.org/b.pem"`),
			wantErr: []string{`is not an absolute URL without credentials`}},
		{name: "trust_bundle_url ftp", src: bare(`trust_domain = "example.org"`, `server_address = "127.0.0.1:8081"`, `data_dir = "/d"`,
			`trust_bundle_url = "ftp://example.org/b.pem"`),
			wantErr: []string{`must be an https URL`}},
		{name: "allow_loopback_http without url", src: bare(`trust_domain = "example.org"`, `server_address = "127.0.0.1:8081"`, `data_dir = "/d"`,
			`trust_bundle_path = "/b"`, `trust_bundle_url_allow_loopback_http = true`),
			wantErr: []string{`trust_bundle_url_allow_loopback_http applies to trust_bundle_url only`}},
		{name: "bad trust_bundle_format", src: bare(`trust_domain = "example.org"`, `server_address = "127.0.0.1:8081"`, `data_dir = "/d"`,
			`trust_bundle_path = "/b"`, `trust_bundle_format = "der"`),
			wantErr: []string{`trust_bundle_format`}},
		{name: "missing trust_bundle_path, insecure false", src: bare(`trust_domain = "example.org"`, `server_address = "127.0.0.1:8081"`,
			`data_dir = "/d"`, `insecure_bootstrap = false`), wantErr: []string{`agent.hcl:1,7-7: Missing required argument`}},
		{name: "empty trust_bundle_path", src: bare(`trust_domain = "example.org"`, `server_address = "127.0.0.1:8081"`,
			`data_dir = "/d"`, `trust_bundle_path = ""`), wantErr: []string{`agent.hcl:5,23-25: Invalid value; trust_bundle_path must not be empty unless insecure_bootstrap = true.`}},

		// Bad values.
		{name: "insecure_bootstrap with bundle", src: agt(`insecure_bootstrap = true`, joinTokenBlock),
			wantErr: []string{`agent.hcl:6,24-28: Conflicting settings; insecure_bootstrap = true and trust_bundle_path are mutually exclusive`}},
		{name: "insecure_bootstrap string", src: agt(`insecure_bootstrap = "true"`, joinTokenBlock),
			wantErr: []string{"config: agent.hcl:6,24-30: Incorrect attribute value type", `"insecure_bootstrap": bool required, got string`}},
		{name: "trust_bundle_path number", src: bare(`trust_domain = "example.org"`, `server_address = "127.0.0.1:8081"`,
			`data_dir = "/d"`, `trust_bundle_path = 1`), wantErr: []string{"config: agent.hcl:5,23-24: Incorrect attribute value type"}},
		{name: "trust_domain invalid", src: bare(`trust_domain = "exa mple.org"`, `server_address = "127.0.0.1:8081"`,
			`trust_bundle_path = "/b"`, `data_dir = "/d"`), wantErr: []string{`agent.hcl:2,18-32: Invalid trust domain`}},
		{name: "trust_domain uri", src: bare(`trust_domain = "spiffe://example.org"`, `server_address = "127.0.0.1:8081"`,
			`trust_bundle_path = "/b"`, `data_dir = "/d"`), wantErr: []string{`agent.hcl:2,`, `without a scheme`}},
		{name: "server_address no port", src: addr(`"127.0.0.1"`),
			wantErr: []string{`agent.hcl:3,20-31: Invalid value; server_address "127.0.0.1" is not host:port`}},
		{name: "server_address no host", src: addr(`":8081"`), wantErr: []string{`agent.hcl:3,`, "has no host"}},
		{name: "server_address bad port", src: addr(`"h:http"`), wantErr: []string{`agent.hcl:3,`, `has port "http"`}},
		{name: "server_address port zero", src: addr(`"h:0"`), wantErr: []string{`agent.hcl:3,`, `has port "0"`}},
		{name: "server_address url", src: addr(`"https://h:8081"`), wantErr: []string{`agent.hcl:3,`, "not host:port"}},
		{name: "empty data_dir", src: bare(`trust_domain = "example.org"`, `server_address = "127.0.0.1:8081"`, `trust_bundle_path = "/b"`, `data_dir = ""`),
			wantErr: []string{`agent.hcl:5,14-16: Invalid value; data_dir must not be empty.`}},
		{name: "duplicate key", src: agt(`data_dir = "/other"`, joinTokenBlock), wantErr: []string{`agent.hcl:6,3-11: Attribute redefined`}},
		{name: "socket_path empty", src: agt(`socket_path = ""`, joinTokenBlock), wantErr: []string{`agent.hcl:6,17-19: Invalid value; socket_path must not be empty.`}},
		{name: "socket_path too long", src: agt(`socket_path = "/`+strings.Repeat("a", 107)+`"`, joinTokenBlock),
			wantErr: []string{`agent.hcl:6,`, "is 108 bytes long; unix socket paths are limited to 107"}},
		{name: "admin socket same as workload socket", src: agt(`admin_socket_path = "`+config.DefaultSocketPathFor(os.Geteuid())+`"`, joinTokenBlock),
			wantErr: []string{`agent.hcl:6,`, "admin_socket_path must differ from socket_path"}},
		{name: "admin_socket_path too long", src: agt(`admin_socket_path = "/`+strings.Repeat("a", 200)+`"`, joinTokenBlock),
			wantErr: []string{`agent.hcl:6,`, "limited to 107"}},
		{name: "join_token with spaces", src: agt(`join_token = "abc def"`), wantErr: []string{`agent.hcl:6,16-25: Invalid join token; join_token contains spaces`}},
		{name: "join_token too long", src: agt(`join_token = "` + strings.Repeat("t", 257) + `"`), wantErr: []string{`agent.hcl:6,`, "more than 256"}},
		{name: "join_token number", src: agt(`join_token = 123`), wantErr: []string{`agent.hcl:6,16-19: Incorrect attribute value type`}},
		{name: "join_token with other node attestor", src: agt(`join_token = "tok"`, `node_attestor "tpm" {}`),
			wantErr: []string{`agent.hcl:6,16-21: Conflicting settings; A join token is given by join_token, but node_attestor "tpm" is configured at agent.hcl:8`}},
		{name: "option token with other node attestor", src: agt("", `node_attestor "tpm" {}`), opts: []config.Option{config.WithJoinToken("tok")},
			wantErr: []string{`agent.hcl:7,1-20: Conflicting settings; A join token is given on the command line, but node_attestor "tpm"`}},
		{name: "option token with spaces", src: agt("", joinTokenBlock), opts: []config.Option{config.WithJoinToken("a b")},
			wantErr: []string{`agent.hcl:1,1-6: Invalid join token; The join token given on the command line contains spaces`}},
		{name: "log_level unknown", src: agt(`log_level = "trace"`, joinTokenBlock), wantErr: []string{`agent.hcl:6,15-22: Invalid log level`}},
		{name: "log_format unknown", src: agt(`log_format = "logfmt"`, joinTokenBlock), wantErr: []string{`agent.hcl:6,`, `log_format "logfmt" is not one of text, json.`}},
		{name: "log_file number", src: agt(`log_file = 1`, joinTokenBlock), wantErr: []string{`agent.hcl:6,`, "string required, got number"}},

		{name: "every problem at once", src: `agent {
  trust_domain = "example.org"
  server_address = "nope"
  insecure_bootstrap = "yes"
  bogus = 1
  log_level = "loud"
}
agent {}
workload_attestor "unix" {}
workload_attestor "unix" {}
`, wantErr: []string{"config: 7 problems:\n", "agent.hcl:1,7-7: Missing required argument; The argument \"data_dir\"", "agent.hcl:1,7-7: Missing required argument", "agent.hcl:3,", "agent.hcl:4,",
			"agent.hcl:5,", "agent.hcl:6,", "agent.hcl:8,", "agent.hcl:10,"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := config.Parse("agent.hcl", []byte(tt.src), tt.opts...)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("no error, want %q", tt.wantErr)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q\ndoes not contain %q", err, w)
					}
				}
				var ce *hclconf.Error
				if !errors.As(err, &ce) {
					t.Errorf("error is %T, not *hclconf.Error", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			want := defaults()
			if tt.want != nil {
				tt.want(&want)
			}
			n := got.NodeAttestor
			if n.Kind != tt.wantNode || n.Type != "node_attestor" || n.Body == nil || n.Range.Start.Line != tt.wantNodeLine {
				t.Errorf("node attestor %+v, want kind %q at line %d", n, tt.wantNode, tt.wantNodeLine)
			}
			var kinds []string
			for _, b := range got.WorkloadAttestors {
				kinds = append(kinds, b.Kind)
				if b.Type != "workload_attestor" || b.Body == nil {
					t.Errorf("bad block %+v", b)
				}
			}
			if !reflect.DeepEqual(kinds, tt.wantWorkloads) {
				t.Errorf("workload attestor kinds %q, want %q", kinds, tt.wantWorkloads)
			}
			got.NodeAttestor, got.WorkloadAttestors = hclconf.Block{}, nil
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("got  %+v\nwant %+v", *got, want)
			}
		})
	}
}

// TestImpliedJoinTokenBlock checks that the implied block decodes as an
// empty body.
func TestImpliedJoinTokenBlock(t *testing.T) {
	c, err := config.Parse("agent.hcl", []byte(agt("")), config.WithJoinToken("t"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		X string `hcl:"x,optional"`
	}
	if err := hclconf.DecodeBlock(c.NodeAttestor, &v); err != nil {
		t.Fatal(err)
	}
}

func TestExampleFiles(t *testing.T) {
	for _, path := range []string{"testdata/agent.hcl", "../../conf/agent.hcl"} {
		t.Run(path, func(t *testing.T) {
			c, err := config.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			want := defaults()
			want.DataDir = "./data/agent"
			want.TrustBundlePath = "./conf/bundle.pem"
			if c.NodeAttestor.Kind != "join_token" || len(c.WorkloadAttestors) != 1 || c.WorkloadAttestors[0].Kind != "unix" {
				t.Fatalf("attestors %+v %+v", c.NodeAttestor, c.WorkloadAttestors)
			}
			var unix struct {
				DiscoverWorkloadPath bool `hcl:"discover_workload_path,optional"`
			}
			if err := hclconf.DecodeBlock(c.WorkloadAttestors[0], &unix); err != nil {
				t.Fatal(err)
			}
			c.NodeAttestor, c.WorkloadAttestors = hclconf.Block{}, nil
			if !reflect.DeepEqual(*c, want) {
				t.Errorf("got  %+v\nwant %+v", *c, want)
			}
		})
	}
	a, err := os.ReadFile("testdata/agent.hcl")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("../../conf/agent.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if string(a) != string(b) {
		t.Error("conf/agent.hcl differs from agent/config/testdata/agent.hcl: copy it again")
	}
}

func TestWorkloadAttestorBodyIsStrict(t *testing.T) {
	c, err := config.Parse("agent.hcl", []byte(agt("", joinTokenBlock, `workload_attestor "unix" {
  discover_workload_path = "yes"
}`)))
	if err != nil {
		t.Fatal(err)
	}
	var unix struct {
		DiscoverWorkloadPath bool `hcl:"discover_workload_path,optional"`
	}
	err = hclconf.DecodeBlock(c.WorkloadAttestors[0], &unix)
	if err == nil || !strings.Contains(err.Error(), `workload_attestor "unix": agent.hcl:9,28-33: Incorrect attribute value type`) {
		t.Fatalf("got %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.hcl")
	if err := os.WriteFile(path, []byte(agt("")), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := config.Load(path); err != nil || c.NodeAttestor.Kind != "join_token" || c.JoinToken != "" {
		t.Fatalf("without a token: %+v, %v; want an implied join_token attestor", c, err)
	}
	c, err := config.Load(path, config.WithJoinToken("tok"))
	if err != nil {
		t.Fatal(err)
	}
	if c.JoinToken != "tok" || c.NodeAttestor.Kind != "join_token" {
		t.Fatalf("got %+v", c)
	}
	if _, err := config.Load(filepath.Join(dir, "missing.hcl")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v", err)
	}
}

func TestLogger(t *testing.T) {
	c, err := config.Parse("agent.hcl", []byte(agt(`log_level = "error"`, joinTokenBlock)))
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	log, closer, err := c.Logger(&sb)
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	log.Warn("quiet")
	log.Error("loud")
	if out := sb.String(); strings.Contains(out, "quiet") || !strings.Contains(out, "loud") {
		t.Fatalf("logger wrote %q", out)
	}
}

// Root's default socket is in /run, where no other user can create the
// directory first; other users keep SPIRE's /tmp layout.
func TestDefaultSocketPathFor(t *testing.T) {
	tests := []struct {
		name string
		euid int
		want string
	}{
		{name: "root", euid: 0, want: config.RootSocketPath},
		{name: "other user", euid: 1000, want: config.DefaultSocketPath},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := config.DefaultSocketPathFor(tt.euid); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if !strings.HasPrefix(tt.want, "/run/") && !strings.HasPrefix(tt.want, "/tmp/") {
				t.Errorf("%q is neither in /run nor in /tmp", tt.want)
			}
		})
	}
}
