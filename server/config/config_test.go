package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/internal/hclconf"
	"github.com/hallmarkid/hallmark/server/config"
)

// srv returns a file whose server block holds the two required settings on
// lines 2 and 3, then extra, one setting per line from line 4, then rest.
func srv(extra string, rest ...string) string {
	s := "server {\n  trust_domain = \"example.org\"\n  data_dir = \"/var/lib/hallmark\"\n"
	if extra != "" {
		s += "  " + strings.ReplaceAll(extra, "\n", "\n  ") + "\n"
	}
	s += "}\n"
	for _, r := range rest {
		s += r + "\n"
	}
	return s
}

func defaults() config.Config {
	return config.Config{
		TrustDomain:          spiffeid.RequireTrustDomainFromString("example.org"),
		BindAddress:          "127.0.0.1",
		BindPort:             8081,
		DataDir:              "/var/lib/hallmark",
		SocketPath:           config.DefaultSocketPathFor(os.Geteuid()),
		CAKeyType:            config.KeyTypeECP256,
		CATTL:                168 * time.Hour,
		DefaultX509SVIDTTL:   time.Hour,
		AgentSVIDTTL:         time.Hour,
		DatastoreOutageGrace: 10 * time.Minute,
		JWTKeyType:           config.KeyTypeECP256,
		JWTKeyTTL:            24 * time.Hour,
		DefaultJWTSVIDTTL:    5 * time.Minute,
		LogLevel:             "info",
		LogFormat:            "text",
		Datastore:            config.Datastore{Type: "sqlite", Path: "/var/lib/hallmark/datastore.sqlite3"},
		NodeAPI:              config.DefaultNodeAPILimits(),
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name      string
		src       string
		want      func(c *config.Config) // changes to defaults()
		wantKinds []string
		wantErr   []string
	}{
		{name: "minimal", src: srv("")},
		{name: "bind_address ipv6", src: srv(`bind_address = "::"`), want: func(c *config.Config) { c.BindAddress = "::" }},
		{name: "bind_address any", src: srv(`bind_address = "0.0.0.0"`), want: func(c *config.Config) { c.BindAddress = "0.0.0.0" }},
		{name: "bind_port", src: srv(`bind_port = 9443`), want: func(c *config.Config) { c.BindPort = 9443 }},
		{name: "bind_port zero picks any", src: srv(`bind_port = 0`), want: func(c *config.Config) { c.BindPort = 0 }},
		{name: "socket_path", src: srv(`socket_path = "/run/hallmark/admin.sock"`),
			want: func(c *config.Config) { c.SocketPath = "/run/hallmark/admin.sock" }},
		{name: "ca_key_type p384", src: srv(`ca_key_type = "ec-p384"`), want: func(c *config.Config) { c.CAKeyType = config.KeyTypeECP384 }},
		{name: "ca_key_type rsa", src: srv(`ca_key_type = "rsa-2048"`), want: func(c *config.Config) { c.CAKeyType = config.KeyTypeRSA2048 }},
		{name: "ttls", src: srv("ca_ttl = \"720h\"\ndefault_x509_svid_ttl = \"90s\"\nagent_svid_ttl = \"1h30m\""),
			want: func(c *config.Config) {
				c.CATTL, c.DefaultX509SVIDTTL, c.AgentSVIDTTL = 720*time.Hour, 90*time.Second, 90*time.Minute
			}},
		{name: "logging", src: srv("log_level = \"DEBUG\"\nlog_format = \"json\"\nlog_file = \"/var/log/hallmark.log\""),
			want: func(c *config.Config) { c.LogLevel, c.LogFormat, c.LogFile = "debug", "json", "/var/log/hallmark.log" }},
		{name: "sqlite path", src: srv("", `datastore {
  type = "sqlite"
  path = "/srv/db.sqlite3"
}`), want: func(c *config.Config) { c.Datastore.Path = "/srv/db.sqlite3" }},
		{name: "empty datastore block", src: srv("", "datastore {}")},
		{name: "postgres", src: srv("", `datastore {
  type = "postgres"
  connection_string = "postgres://h@127.0.0.1/h"
}`), want: func(c *config.Config) {
			c.Datastore = config.Datastore{Type: "postgres", ConnectionString: "postgres://h@127.0.0.1/h"}
		}},
		{name: "node attestors in file order", src: srv("", `node_attestor "tpm" {
  ek_ca_path = "/x"
}`, `node_attestor "join_token" {}`), wantKinds: []string{"tpm", "join_token"}},
		{name: "comments of every style", src: "# a\n// b\n/* c */\n" + srv("bind_port = 1 # d"), want: func(c *config.Config) { c.BindPort = 1 }},
		{name: "blocks in any order", src: "datastore {}\n" + srv("")},

		// Syntax and structure.
		{name: "syntax error", src: "server {\n  trust_domain = \n}\n", wantErr: []string{"server.hcl:2,"}},
		{name: "unclosed block", src: "server {\n", wantErr: []string{"server.hcl:1,"}},
		{name: "empty file", src: "", wantErr: []string{"server.hcl:1,1-1: Missing server block"}},
		{name: "duplicate server block", src: srv("", "server {}"),
			wantErr: []string{"server.hcl:5,1-7: Duplicate server block; Only one server block is allowed. Another was defined at server.hcl:1."}},
		{name: "duplicate datastore block", src: srv("", "datastore {}", "datastore {}"),
			wantErr: []string{"server.hcl:6,1-10: Duplicate datastore block"}},
		{name: "duplicate node_attestor kind", src: srv("", `node_attestor "tpm" {}`, `node_attestor "tpm" {}`),
			wantErr: []string{`server.hcl:6,1-20: Duplicate node_attestor block; Only one node_attestor "tpm" block is allowed. Another was defined at server.hcl:5.`}},
		{name: "node_attestor bad kind", src: srv("", `node_attestor "TPM" {}`), wantErr: []string{`server.hcl:5,15-20: Invalid node_attestor kind`}},
		{name: "node_attestor without label", src: srv("", `node_attestor {}`), wantErr: []string{`server.hcl:5,`, `Missing kind for node_attestor`}},
		{name: "unknown key in server", src: srv("bogus = 1"),
			wantErr: []string{`server.hcl:4,3-8: Unsupported argument; An argument named "bogus" is not expected here.`}},
		{name: "misspelled key suggests", src: srv("bind_prot = 1"), wantErr: []string{`server.hcl:4,3-12: Unsupported argument`, `Did you mean "bind_port"?`}},
		{name: "unknown block in server", src: srv("tls {}"), wantErr: []string{`server.hcl:4,3-6: Unsupported block type`}},
		{name: "unknown key in datastore", src: srv("", "datastore {\n  dsn = \"x\"\n}"),
			wantErr: []string{`server.hcl:6,3-6: Unsupported argument; An argument named "dsn" is not expected here.`}},
		{name: "unknown top-level block", src: srv("", "agent {}"), wantErr: []string{`server.hcl:5,1-6: Unsupported block type`}},
		{name: "top-level argument", src: srv("", `trust_domain = "x"`), wantErr: []string{`server.hcl:5,1-13: Unsupported argument`}},
		{name: "duplicate key", src: srv(`bind_port = 1` + "\n" + `bind_port = 2`), wantErr: []string{`server.hcl:5,3-12: Attribute redefined`}},

		// Required settings.
		{name: "missing trust_domain", src: "server {\n  data_dir = \"/d\"\n}\n",
			wantErr: []string{`server.hcl:1,8-8: Missing required argument; The argument "trust_domain" is required`}},
		{name: "missing data_dir", src: "server {\n  trust_domain = \"example.org\"\n}\n",
			wantErr: []string{`server.hcl:1,8-8: Missing required argument; The argument "data_dir" is required`}},
		{name: "empty data_dir", src: "server {\n  trust_domain = \"example.org\"\n  data_dir = \"\"\n}\n",
			wantErr: []string{`server.hcl:3,14-16: Invalid value; data_dir must not be empty.`}},

		// Bad values.
		{name: "trust_domain upper case", src: "server {\n  trust_domain = \"Example.org\"\n  data_dir = \"/d\"\n}\n",
			wantErr: []string{`server.hcl:2,18-31: Invalid trust domain; trust_domain "Example.org"`, "lowercase"}},
		{name: "trust_domain with scheme", src: "server {\n  trust_domain = \"spiffe://example.org\"\n  data_dir = \"/d\"\n}\n",
			wantErr: []string{`server.hcl:2,`, "without a scheme"}},
		{name: "trust_domain empty", src: "server {\n  trust_domain = \"\"\n  data_dir = \"/d\"\n}\n",
			wantErr: []string{`server.hcl:2,18-20: Invalid trust domain`}},
		{name: "trust_domain number", src: "server {\n  trust_domain = 5\n  data_dir = \"/d\"\n}\n",
			wantErr: []string{`server.hcl:2,18-19: Incorrect attribute value type; Inappropriate value for attribute "trust_domain": string required, got number.`}},
		{name: "bind_address hostname", src: srv(`bind_address = "localhost"`), wantErr: []string{`server.hcl:4,18-29: Invalid value; bind_address "localhost" is not an IP address`}},
		{name: "bind_address number", src: srv(`bind_address = 127`), wantErr: []string{`server.hcl:4,`, "string required, got number"}},
		{name: "bind_port string", src: srv(`bind_port = "8081"`), wantErr: []string{`server.hcl:4,15-21: Incorrect attribute value type`, `"bind_port": number required, got string`}},
		{name: "bind_port too large", src: srv(`bind_port = 65536`), wantErr: []string{`server.hcl:4,15-20: Invalid value; bind_port 65536 is out of range 0-65535.`}},
		{name: "bind_port negative", src: srv(`bind_port = -1`), wantErr: []string{`server.hcl:4,`, "out of range"}},
		{name: "bind_port fraction", src: srv(`bind_port = 80.5`), wantErr: []string{`server.hcl:4,`, "whole number"}},
		{name: "socket_path empty", src: srv(`socket_path = ""`), wantErr: []string{`server.hcl:4,`, "socket_path must not be empty"}},
		{name: "socket_path too long", src: srv(`socket_path = "/` + strings.Repeat("s", 120) + `"`), wantErr: []string{`server.hcl:4,`, "limited to 107"}},
		{name: "ca_key_type unknown", src: srv(`ca_key_type = "ec-p521"`),
			wantErr: []string{`server.hcl:4,17-26: Invalid value; ca_key_type "ec-p521" is not one of ec-p256, ec-p384, rsa-2048.`}},
		{name: "ca_ttl plain seconds string", src: srv(`ca_ttl = "3600"`),
			wantErr: []string{`server.hcl:4,12-18: Invalid duration; ca_ttl: invalid duration "3600": write a number with a unit`}},
		{name: "ca_ttl number", src: srv(`ca_ttl = 3600`),
			wantErr: []string{`server.hcl:4,12-16: Incorrect attribute value type; Inappropriate value for attribute "ca_ttl": string required, got number.`}},
		{name: "ca_ttl zero", src: srv(`ca_ttl = "0s"`), wantErr: []string{`server.hcl:4,`, "greater than zero"}},
		{name: "default_x509_svid_ttl bad", src: srv(`default_x509_svid_ttl = "1 hour"`), wantErr: []string{`server.hcl:4,`, `invalid duration "1 hour"`}},
		{name: "datastore_outage_grace", src: srv(`datastore_outage_grace = "90s"`),
			want: func(c *config.Config) { c.DatastoreOutageGrace = 90 * time.Second }},
		{name: "datastore_outage_grace bad", src: srv(`datastore_outage_grace = "0s"`), wantErr: []string{`server.hcl:4,`, "greater than zero"}},
		{name: "agent_svid_ttl bad", src: srv(`agent_svid_ttl = "-5m"`), wantErr: []string{`server.hcl:4,`, "greater than zero"}},
		{name: "svid ttl not below ca_ttl", src: srv("ca_ttl = \"2h\"\ndefault_x509_svid_ttl = \"2h\""),
			wantErr: []string{`server.hcl:5,27-31: Conflicting settings; default_x509_svid_ttl (2h0m0s) must be shorter than ca_ttl (2h0m0s)`}},
		{name: "agent ttl not below ca_ttl", src: srv("ca_ttl = \"2h\"\nagent_svid_ttl = \"3h\""),
			wantErr: []string{`server.hcl:5,`, `agent_svid_ttl (3h0m0s) must be shorter than ca_ttl`}},
		{name: "ca_ttl below default svid ttls", src: srv(`ca_ttl = "30m"`),
			wantErr: []string{"2 problems", `server.hcl:4,12-17: Conflicting settings; default_x509_svid_ttl (1h0m0s)`, `server.hcl:4,12-17: Conflicting settings; agent_svid_ttl (1h0m0s)`}},
		{name: "log_level unknown", src: srv(`log_level = "verbose"`), wantErr: []string{`server.hcl:4,15-24: Invalid log level; log_level "verbose" is not one of debug, info, warn, error.`}},
		{name: "log_format unknown", src: srv(`log_format = "xml"`), wantErr: []string{`server.hcl:4,`, `log_format "xml" is not one of text, json.`}},
		{name: "log_format bool", src: srv(`log_format = true`), wantErr: []string{`server.hcl:4,`, "string required, got bool"}},
		{name: "log_file list", src: srv(`log_file = ["a"]`), wantErr: []string{`server.hcl:4,`, "string required, got tuple"}},
		{name: "interpolation", src: srv(`data_dir2 = "${env.HOME}"`), wantErr: []string{`server.hcl:4,`}},
		{name: "variable", src: srv(`log_file = env.LOG`), wantErr: []string{`server.hcl:4,14-17: Variables not allowed`}},

		// Datastore.
		{name: "datastore type unknown", src: srv("", "datastore {\n  type = \"mysql\"\n}"),
			wantErr: []string{`server.hcl:6,10-17: Invalid value; type "mysql" is not one of sqlite, postgres.`}},
		{name: "datastore type number", src: srv("", "datastore {\n  type = 1\n}"), wantErr: []string{`server.hcl:6,`, "string required"}},
		{name: "postgres without connection_string", src: srv("", "datastore {\n  type = \"postgres\"\n}"),
			wantErr: []string{`server.hcl:5,11-11: Missing required argument; The postgres datastore needs a connection_string`}},
		{name: "postgres empty connection_string", src: srv("", "datastore {\n  type = \"postgres\"\n  connection_string = \"\"\n}"),
			wantErr: []string{`server.hcl:7,23-25: Invalid value; connection_string must not be empty.`}},
		{name: "postgres connection_string number", src: srv("", "datastore {\n  type = \"postgres\"\n  connection_string = 1\n}"),
			wantErr: []string{"config: server.hcl:7,23-24: Incorrect attribute value type"}},
		{name: "postgres with path", src: srv("", "datastore {\n  type = \"postgres\"\n  connection_string = \"postgres://x\"\n  path = \"/db\"\n}"),
			wantErr: []string{`server.hcl:8,10-15: Conflicting settings; path is for the sqlite datastore only`}},
		{name: "sqlite with connection_string", src: srv("", "datastore {\n  connection_string = \"postgres://x\"\n}"),
			wantErr: []string{`server.hcl:6,23-37: Conflicting settings; connection_string is for the postgres datastore only`}},
		{name: "sqlite empty path", src: srv("", "datastore {\n  path = \"\"\n}"), wantErr: []string{`server.hcl:6,`, "path must not be empty"}},

		// JWT-SVIDs and OIDC.
		{name: "jwt settings", src: srv("jwt_key_type = \"rsa-2048\"\njwt_key_ttl = \"12h\"\njwt_issuer = \"https://oidc.example.org/td\"\ndefault_jwt_svid_ttl = \"15m\""),
			want: func(c *config.Config) {
				c.JWTKeyType, c.JWTKeyTTL, c.JWTIssuer, c.DefaultJWTSVIDTTL = config.KeyTypeRSA2048, 12*time.Hour, "https://oidc.example.org/td", 15*time.Minute
			}},
		{name: "jwt_key_type p384", src: srv(`jwt_key_type = "ec-p384"`), want: func(c *config.Config) { c.JWTKeyType = config.KeyTypeECP384 }},
		{name: "jwt issuer on loopback http", src: srv(`jwt_issuer = "http://127.0.0.1:8090"`), want: func(c *config.Config) { c.JWTIssuer = "http://127.0.0.1:8090" }},
		{name: "jwt_key_type unknown", src: srv(`jwt_key_type = "ES256"`),
			wantErr: []string{`server.hcl:4,18-25: Invalid value; jwt_key_type "ES256" is not one of ec-p256, ec-p384, rsa-2048.`}},
		{name: "jwt_key_ttl bad", src: srv(`jwt_key_ttl = "1 day"`), wantErr: []string{`server.hcl:4,`, `invalid duration "1 day"`}},
		{name: "jwt_key_ttl number", src: srv(`jwt_key_ttl = 86400`), wantErr: []string{`server.hcl:4,`, "string required, got number"}},
		{name: "jwt_key_ttl below default token ttl", src: srv(`jwt_key_ttl = "5m"`),
			wantErr: []string{`server.hcl:4,17-21: Conflicting settings; default_jwt_svid_ttl (5m0s) must be shorter than jwt_key_ttl (5m0s)`}},
		{name: "default_jwt_svid_ttl not below key ttl", src: srv("jwt_key_ttl = \"1h\"\ndefault_jwt_svid_ttl = \"2h\""),
			wantErr: []string{`server.hcl:5,26-30: Conflicting settings; default_jwt_svid_ttl (2h0m0s) must be shorter than jwt_key_ttl`}},
		{name: "default_jwt_svid_ttl above max", src: srv("jwt_key_ttl = \"100h\"\ndefault_jwt_svid_ttl = \"25h\""),
			wantErr: []string{`server.hcl:5,`, "must be at most 24h0m0s"}},
		{name: "jwt_issuer not https", src: srv(`jwt_issuer = "http://oidc.example.org"`), wantErr: []string{`server.hcl:4,16-41: Invalid value; jwt_issuer "http://oidc.example.org" must be an https:// URL`}},
		{name: "jwt_issuer bare name", src: srv(`jwt_issuer = "oidc.example.org"`), wantErr: []string{`server.hcl:4,`, "must be an https:// URL"}},
		{name: "jwt_issuer query", src: srv(`jwt_issuer = "https://oidc.example.org/?a=1"`), wantErr: []string{`server.hcl:4,`, "query"}},
		{name: "jwt_issuer fragment", src: srv(`jwt_issuer = "https://oidc.example.org#x"`), wantErr: []string{`server.hcl:4,`, "fragment"}},
		{name: "jwt_issuer no host", src: srv(`jwt_issuer = "https:///x"`), wantErr: []string{`server.hcl:4,`, "has no host"}},
		{name: "jwt_issuer not a URL", src: srv(`jwt_issuer = "https://%zz"`), wantErr: []string{`server.hcl:4,`, "is not a URL"}},
		{name: "oidc loopback", src: srv(`jwt_issuer = "https://oidc.example.org"`, "oidc {\n  listen_address = \"127.0.0.1:8090\"\n}"),
			want: func(c *config.Config) {
				c.JWTIssuer = "https://oidc.example.org"
				c.OIDC = &config.OIDC{ListenAddress: "127.0.0.1:8090", Domains: []string{"oidc.example.org"}}
			}},
		{name: "oidc https with domains", src: srv(`jwt_issuer = "https://oidc.example.org"`, `oidc {
  listen_address = "0.0.0.0:443"
  domains        = ["oidc.example.org", "10.0.0.1"]
  cert_file_path = "/etc/oidc.crt"
  key_file_path  = "/etc/oidc.key"
}`), want: func(c *config.Config) {
			c.JWTIssuer = "https://oidc.example.org"
			c.OIDC = &config.OIDC{ListenAddress: "0.0.0.0:443", Domains: []string{"oidc.example.org", "10.0.0.1"}, CertFile: "/etc/oidc.crt", KeyFile: "/etc/oidc.key"}
		}},
		{name: "oidc without issuer", src: srv("", "oidc {\n  listen_address = \"127.0.0.1:8090\"\n}"),
			wantErr: []string{`server.hcl:5,1-5: Missing required argument; The oidc block needs jwt_issuer`}},
		{name: "oidc plain http off loopback", src: srv(`jwt_issuer = "https://oidc.example.org"`, "oidc {\n  listen_address = \"0.0.0.0:80\"\n}"),
			wantErr: []string{`server.hcl:7,20-32: Conflicting settings; listen_address "0.0.0.0:80" is not a loopback address`}},
		{name: "oidc listen hostname", src: srv(`jwt_issuer = "https://oidc.example.org"`, "oidc {\n  listen_address = \"localhost:80\"\n}"),
			wantErr: []string{`server.hcl:7,`, "is not an IP address and port"}},
		{name: "oidc listen no port", src: srv(`jwt_issuer = "https://oidc.example.org"`, "oidc {\n  listen_address = \"127.0.0.1\"\n}"),
			wantErr: []string{`server.hcl:7,`, "is not an IP address and port"}},
		{name: "oidc listen port out of range", src: srv(`jwt_issuer = "https://oidc.example.org"`, "oidc {\n  listen_address = \"127.0.0.1:70000\"\n}"),
			wantErr: []string{`server.hcl:7,`, "is not an IP address and port"}},
		{name: "oidc missing listen_address", src: srv(`jwt_issuer = "https://oidc.example.org"`, "oidc {}"),
			wantErr: []string{`server.hcl:6,`, `The argument "listen_address" is required`}},
		{name: "oidc cert without key", src: srv(`jwt_issuer = "https://oidc.example.org"`, "oidc {\n  listen_address = \"127.0.0.1:1\"\n  cert_file_path = \"/c\"\n}"),
			wantErr: []string{`server.hcl:8,`, "cert_file_path and key_file_path go together"}},
		{name: "oidc domains miss issuer", src: srv(`jwt_issuer = "https://oidc.example.org"`, "oidc {\n  listen_address = \"127.0.0.1:1\"\n  domains = [\"other.example.org\"]\n}"),
			wantErr: []string{`server.hcl:8,`, `domains must include "oidc.example.org"`}},
		{name: "oidc bad domain", src: srv(`jwt_issuer = "https://oidc.example.org"`, "oidc {\n  listen_address = \"127.0.0.1:1\"\n  domains = [\"oidc.example.org\", \"https://x\", \"UP.org\", \"oidc.example.org\"]\n}"),
			wantErr: []string{"3 problems", `"https://x" is not a lowercase host name`, `"UP.org" is not`, "listed twice"}},
		{name: "oidc empty domains", src: srv(`jwt_issuer = "https://oidc.example.org"`, "oidc {\n  listen_address = \"127.0.0.1:1\"\n  domains = []\n}"),
			wantErr: []string{`server.hcl:8,`, "domains must not be empty"}},
		{name: "oidc unknown key", src: srv(`jwt_issuer = "https://oidc.example.org"`, "oidc {\n  listen_address = \"127.0.0.1:1\"\n  issuer = \"x\"\n}"),
			wantErr: []string{`server.hcl:8,3-9: Unsupported argument`}},
		{name: "duplicate oidc block", src: srv(`jwt_issuer = "https://oidc.example.org"`, "oidc {\n  listen_address = \"127.0.0.1:1\"\n}", "oidc {\n  listen_address = \"127.0.0.1:2\"\n}"),
			wantErr: []string{`server.hcl:9,1-5: Duplicate oidc block`}},

		{name: "every problem at once", src: `server {
  trust_domain = "Bad!"
  bogus = 1
  bind_port = "x"
  ca_ttl = "forever"
}
server {}
datastore {
  type = "postgres"
}
node_attestor "x-y" {}
`, wantErr: []string{"config: 8 problems:\n", "server.hcl:1,8-8: Missing required argument", "server.hcl:2,", "server.hcl:3,", "server.hcl:4,", "server.hcl:5,",
			"server.hcl:7,", "server.hcl:8,", "server.hcl:11,"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := config.Parse("server.hcl", []byte(tt.src))
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
			var kinds []string
			for _, b := range got.NodeAttestors {
				kinds = append(kinds, b.Kind)
				if b.Type != "node_attestor" || b.Body == nil || b.Range.Filename != "server.hcl" {
					t.Errorf("bad block %+v", b)
				}
			}
			if !reflect.DeepEqual(kinds, tt.wantKinds) {
				t.Errorf("node attestor kinds %q, want %q", kinds, tt.wantKinds)
			}
			got.NodeAttestors = nil
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("got  %+v\nwant %+v", *got, want)
			}
		})
	}
}

func TestExampleFiles(t *testing.T) {
	for _, path := range []string{"testdata/server.hcl", "../../conf/server.hcl"} {
		t.Run(path, func(t *testing.T) {
			c, err := config.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			want := defaults()
			want.DataDir = "./data/server"
			want.Datastore.Path = "./data/server/datastore.sqlite3"
			if len(c.NodeAttestors) != 1 || c.NodeAttestors[0].Kind != "join_token" {
				t.Fatalf("node attestors %+v", c.NodeAttestors)
			}
			c.NodeAttestors = nil
			if !reflect.DeepEqual(*c, want) {
				t.Errorf("got  %+v\nwant %+v", *c, want)
			}
		})
	}
	a, err := os.ReadFile("testdata/server.hcl")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("../../conf/server.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if string(a) != string(b) {
		t.Error("conf/server.hcl differs from server/config/testdata/server.hcl: copy it again")
	}
}

// TestAttestorBody shows the hand-off: the config keeps a node_attestor
// body, the attestor decodes it strictly.
func TestAttestorBody(t *testing.T) {
	c, err := config.Parse("server.hcl", []byte(srv("", `node_attestor "tpm" {
  ek_ca_path = "/etc/ek"
  bogus      = true
}`)))
	if err != nil {
		t.Fatal(err)
	}
	var tpm struct {
		EKCAPath string `hcl:"ek_ca_path"`
	}
	err = hclconf.DecodeBlock(c.NodeAttestors[0], &tpm)
	if err == nil || !strings.Contains(err.Error(), `node_attestor "tpm": server.hcl:7,3-8: Unsupported argument`) {
		t.Fatalf("got %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "server.hcl")
	if err := os.WriteFile(path, []byte(srv("bogus = 1")), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := config.Load(path)
	if err == nil || !strings.Contains(err.Error(), path+":4,3-8: Unsupported argument") {
		t.Fatalf("got %v, want the path and line", err)
	}
	_, err = config.Load(filepath.Join(dir, "missing.hcl"))
	if err == nil || !strings.HasPrefix(err.Error(), "config: ") || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v", err)
	}
}

func TestConfigHelpers(t *testing.T) {
	c, err := config.Parse("server.hcl", []byte(srv("bind_address = \"::1\"\nbind_port = 9000\nlog_format = \"json\"")))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.BindAddr(); got != "[::1]:9000" {
		t.Errorf("BindAddr() = %q", got)
	}
	var sb strings.Builder
	log, closer, err := c.Logger(&sb)
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	log.Info("ready")
	if !strings.Contains(sb.String(), `"msg":"ready"`) {
		t.Errorf("logger wrote %q", sb.String())
	}
}

func TestJWTAlgorithm(t *testing.T) {
	for _, tt := range []struct {
		name string
		kt   config.KeyType
		want string
	}{
		{name: "p256", kt: config.KeyTypeECP256, want: "ES256"},
		{name: "p384", kt: config.KeyTypeECP384, want: "ES384"},
		{name: "rsa", kt: config.KeyTypeRSA2048, want: "RS256"},
		{name: "unknown", kt: "ec-p521", want: ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.kt.JWTAlgorithm(); got != tt.want {
				t.Fatalf("JWTAlgorithm() = %q, want %q", got, tt.want)
			}
		})
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
