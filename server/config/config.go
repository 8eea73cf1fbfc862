package config

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/internal/hclconf"
)

// Defaults for settings left out of the file.
const (
	DefaultBindAddress = "127.0.0.1"
	DefaultBindPort    = 8081
	// DefaultSocketPath is the admin socket of a server not running as
	// root (SPIRE's layout); RootSocketPath that of one running as root,
	// in /run where no other user can create the directory first.
	DefaultSocketPath         = "/tmp/hallmark-server/private/api.sock"
	RootSocketPath            = "/run/hallmark-server/api.sock"
	DefaultCAKeyType          = KeyTypeECP256
	DefaultCATTL              = 168 * time.Hour
	DefaultX509SVIDTTL        = time.Hour
	DefaultAgentSVIDTTL       = time.Hour
	DefaultJWTKeyType         = KeyTypeECP256
	DefaultJWTKeyTTL          = 24 * time.Hour
	DefaultJWTSVIDTTL         = 5 * time.Minute
	MaxJWTSVIDTTL             = 24 * time.Hour
	DefaultOutageGrace        = 10 * time.Minute
	DefaultDatastoreType      = DatastoreSQLite
	DefaultSQLiteFile         = "datastore.sqlite3" // inside data_dir
	errPrefix                 = "config"
	summaryInvalidValue       = "Invalid value"
	summaryConflictingSetting = "Conflicting settings"
)

// KeyType is the key algorithm of the CA or of the JWT signing keys.
type KeyType string

// Key types.
const (
	KeyTypeECP256  KeyType = "ec-p256"
	KeyTypeECP384  KeyType = "ec-p384"
	KeyTypeRSA2048 KeyType = "rsa-2048"
)

// JWTAlgorithm returns the JOSE algorithm a JWT signing key of type k
// signs with: ES256, ES384 or RS256 ("" for an unknown type).
func (k KeyType) JWTAlgorithm() string {
	switch k {
	case KeyTypeECP256:
		return "ES256"
	case KeyTypeECP384:
		return "ES384"
	case KeyTypeRSA2048:
		return "RS256"
	}
	return ""
}

// Datastore types.
const (
	DatastoreSQLite   = "sqlite"
	DatastorePostgres = "postgres"
)

// DefaultSocketPathFor returns the default socket_path of a server running
// with effective uid euid.
func DefaultSocketPathFor(euid int) string {
	if euid == 0 {
		return RootSocketPath
	}
	return DefaultSocketPath
}

// Config is the server's configuration, validated and with defaults
// applied.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	BindAddress string // an IP address
	BindPort    int    // 0 picks any free port
	DataDir     string
	SocketPath  string // admin API unix socket

	CAKeyType          KeyType
	CATTL              time.Duration
	DefaultX509SVIDTTL time.Duration // < CATTL
	AgentSVIDTTL       time.Duration // < CATTL
	// DatastoreOutageGrace bounds how long agents keep getting SVIDs
	// signed from the agent records last read while the datastore fails.
	DatastoreOutageGrace time.Duration

	// JWT-SVID signing: key type and lifetime of each signing key (keys
	// rotate at 5/6 of it), the "iss" claim (empty: none) and the lifetime
	// of tokens whose entry sets none (< JWTKeyTTL, ≤ MaxJWTSVIDTTL).
	JWTKeyType        KeyType
	JWTKeyTTL         time.Duration
	JWTIssuer         string
	DefaultJWTSVIDTTL time.Duration

	LogLevel  string // debug, info, warn or error
	LogFormat string // text or json
	LogFile   string // empty: the caller's fallback writer (stderr)

	Datastore Datastore

	// NodeAttestors holds one block per node_attestor kind, in file order,
	// for each verifier to decode with hclconf.DecodeBlock.
	NodeAttestors []hclconf.Block

	// Optional blocks whose bodies their owners decode strictly; nil when
	// absent: audit (audit log), telemetry (metrics and health listener),
	// federation (bundle endpoint and federated trust domains) and
	// upstream_authority "disk" (the CA becomes an intermediate).
	Audit             *hclconf.Block
	Telemetry         *hclconf.Block
	Federation        *hclconf.Block
	UpstreamAuthority *hclconf.Block
	// K8sRegistrar is the k8s_registrar block (server/k8sregistrar:
	// registration entries from Kubernetes objects); nil when absent.
	K8sRegistrar *hclconf.Block

	// BundlePublishers holds one bundle_publisher block per kind (file,
	// k8s_configmap, aws_ssm), in file order, for server/bundlepub to
	// decode: where the server publishes its trust bundle for agents'
	// bootstrap.
	BundlePublishers []hclconf.Block

	// OIDC is the oidc block (OIDC discovery for JWT-SVIDs); nil when
	// absent.
	OIDC *OIDC

	// NodeAPI bounds the Node API's unauthenticated path.
	NodeAPI NodeAPILimits
}

// Datastore says where registration data is kept.
type Datastore struct {
	Type string // DatastoreSQLite or DatastorePostgres
	// Path is the SQLite database file (SQLite only).
	Path string
	// ConnectionString is the PostgreSQL connection string (PostgreSQL
	// only). It may hold a password: do not log it.
	ConnectionString string
}

// BindAddr returns BindAddress and BindPort as a host:port address.
func (c *Config) BindAddr() string {
	return net.JoinHostPort(c.BindAddress, strconv.Itoa(c.BindPort))
}

// Logger returns the logger the configuration asks for, writing to LogFile
// or, when that is empty, to fallback. Close the Closer at shutdown.
func (c *Config) Logger(fallback io.Writer) (*slog.Logger, io.Closer, error) {
	return hclconf.OpenLogger(c.LogLevel, c.LogFormat, c.LogFile, fallback)
}

// Load reads and parses the configuration file at path.
func Load(path string) (*Config, error) {
	src, err := hclconf.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", errPrefix, err)
	}
	return Parse(path, src)
}

type rawServer struct {
	TrustDomain        string `hcl:"trust_domain"`
	BindAddress        string `hcl:"bind_address,optional"`
	BindPort           int    `hcl:"bind_port,optional"`
	DataDir            string `hcl:"data_dir"`
	SocketPath         string `hcl:"socket_path,optional"`
	CAKeyType          string `hcl:"ca_key_type,optional"`
	CATTL              string `hcl:"ca_ttl,optional"`
	DefaultX509SVIDTTL string `hcl:"default_x509_svid_ttl,optional"`
	AgentSVIDTTL       string `hcl:"agent_svid_ttl,optional"`
	OutageGrace        string `hcl:"datastore_outage_grace,optional"`
	JWTKeyType         string `hcl:"jwt_key_type,optional"`
	JWTKeyTTL          string `hcl:"jwt_key_ttl,optional"`
	JWTIssuer          string `hcl:"jwt_issuer,optional"`
	DefaultJWTSVIDTTL  string `hcl:"default_jwt_svid_ttl,optional"`
	LogLevel           string `hcl:"log_level,optional"`
	LogFormat          string `hcl:"log_format,optional"`
	LogFile            string `hcl:"log_file,optional"`
	// Node API limits (limits.go).
	AttestationTimeout  string  `hcl:"attestation_timeout,optional"`
	FirstMessageTimeout string  `hcl:"attestation_first_message_timeout,optional"`
	MaxInflight         int     `hcl:"max_inflight_attestations,optional"`
	RatePerSource       float64 `hcl:"attestation_rate_per_source,optional"`
	BurstPerSource      int     `hcl:"attestation_burst_per_source,optional"`
	MaxConns            int     `hcl:"max_unauthenticated_connections,optional"`
	MaxConnsPerSource   int     `hcl:"max_unauthenticated_connections_per_source,optional"`
	MaxMessageSize      string  `hcl:"max_unauthenticated_message_size,optional"`
}

type rawDatastore struct {
	Type             string `hcl:"type,optional"`
	Path             string `hcl:"path,optional"`
	ConnectionString string `hcl:"connection_string,optional"`
}

var fileSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "server"},
		{Type: "datastore"},
		{Type: "node_attestor", LabelNames: []string{"kind"}},
		{Type: "audit"},
		{Type: "telemetry"},
		{Type: "federation"},
		{Type: "upstream_authority", LabelNames: []string{"kind"}},
		{Type: "oidc"},
		{Type: "bundle_publisher", LabelNames: []string{"kind"}},
		{Type: "k8s_registrar"},
	},
}

// Parse parses src, the contents of the configuration file filename, and
// validates it. The error, if any, is an *hclconf.Error listing every
// problem with its file:line.
func Parse(filename string, src []byte) (*Config, error) {
	file, diags := hclconf.ParseFile(filename, src)
	if diags.HasErrors() {
		return nil, hclconf.DiagError(errPrefix, diags)
	}
	content, d := file.Body.Content(fileSchema)
	diags = append(diags, d...)
	top := file.Body.MissingItemRange()

	c := &Config{}
	var srvSec hclconf.Section
	if b := hclconf.Single(content.Blocks, "server", true, top, &diags); b != nil {
		var d hcl.Diagnostics
		srvSec, d = c.server(b.Body)
		diags = append(diags, d...)
	}
	b := hclconf.Single(content.Blocks, "datastore", false, top, &diags)
	diags = append(diags, c.datastore(b)...)
	c.NodeAttestors = hclconf.Labelled(content.Blocks, "node_attestor", &diags)
	c.BundlePublishers = hclconf.Labelled(content.Blocks, "bundle_publisher", &diags)
	c.Audit = hclconf.Optional(content.Blocks, "audit", top, &diags)
	c.Telemetry = hclconf.Optional(content.Blocks, "telemetry", top, &diags)
	c.Federation = hclconf.Optional(content.Blocks, "federation", top, &diags)
	c.K8sRegistrar = hclconf.Optional(content.Blocks, "k8s_registrar", top, &diags)
	if ups := hclconf.Labelled(content.Blocks, "upstream_authority", &diags); len(ups) > 1 {
		diags = append(diags, hclconf.Errorf(ups[1].Range, "Duplicate upstream_authority block",
			"At most one upstream_authority is allowed; %q was already given at %s.", ups[0].Kind, ups[0].Pos()))
	} else if len(ups) == 1 {
		c.UpstreamAuthority = &ups[0]
	}

	if b := hclconf.Single(content.Blocks, "oidc", false, top, &diags); b != nil {
		diags = append(diags, c.oidc(b, srvSec.Has("jwt_issuer"))...)
	}

	if err := hclconf.DiagError(errPrefix, diags); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Config) server(body hcl.Body) (hclconf.Section, hcl.Diagnostics) {
	var raw rawServer
	s, diags := hclconf.Decode(body, &raw)

	c.TrustDomain = s.TrustDomain("trust_domain", raw.TrustDomain, &diags)

	c.BindAddress = DefaultBindAddress
	if s.Set("bind_address") {
		if net.ParseIP(raw.BindAddress) == nil {
			diags = append(diags, s.Errorf("bind_address", summaryInvalidValue,
				"bind_address %q is not an IP address (such as \"127.0.0.1\", \"0.0.0.0\" or \"::\").", raw.BindAddress))
		} else {
			c.BindAddress = raw.BindAddress
		}
	}

	c.BindPort = DefaultBindPort
	if s.Set("bind_port") {
		if raw.BindPort < 0 || raw.BindPort > 65535 {
			diags = append(diags, s.Errorf("bind_port", summaryInvalidValue,
				"bind_port %d is out of range 0-65535.", raw.BindPort))
		} else {
			c.BindPort = raw.BindPort
		}
	}

	c.DataDir = s.NonEmpty("data_dir", raw.DataDir, &diags)
	c.SocketPath = s.SocketPath("socket_path", raw.SocketPath, DefaultSocketPathFor(os.Geteuid()), &diags)
	c.CAKeyType = KeyType(s.OneOf("ca_key_type", raw.CAKeyType, string(DefaultCAKeyType),
		[]string{string(KeyTypeECP256), string(KeyTypeECP384), string(KeyTypeRSA2048)}, &diags))

	c.CATTL = s.Duration("ca_ttl", raw.CATTL, DefaultCATTL, &diags)
	c.DefaultX509SVIDTTL = s.Duration("default_x509_svid_ttl", raw.DefaultX509SVIDTTL, DefaultX509SVIDTTL, &diags)
	c.AgentSVIDTTL = s.Duration("agent_svid_ttl", raw.AgentSVIDTTL, DefaultAgentSVIDTTL, &diags)
	c.DatastoreOutageGrace = s.Duration("datastore_outage_grace", raw.OutageGrace, DefaultOutageGrace, &diags)
	for _, ttl := range []struct {
		name string
		d    time.Duration
	}{{"default_x509_svid_ttl", c.DefaultX509SVIDTTL}, {"agent_svid_ttl", c.AgentSVIDTTL}} {
		if ttl.d >= c.CATTL {
			at := ttl.name
			if !s.Set(at) {
				at = "ca_ttl"
			}
			diags = append(diags, s.Errorf(at, summaryConflictingSetting,
				"%s (%v) must be shorter than ca_ttl (%v): an SVID cannot outlive its CA.", ttl.name, ttl.d, c.CATTL))
		}
	}

	diags = append(diags, c.jwt(s, &raw)...)
	diags = append(diags, c.limits(s, &raw)...)

	c.LogLevel, c.LogFormat = s.CheckLogging(raw.LogLevel, raw.LogFormat, &diags)
	c.LogFile = raw.LogFile
	return s, diags
}

func (c *Config) datastore(b *hcl.Block) hcl.Diagnostics {
	c.Datastore = Datastore{Type: DefaultDatastoreType}
	var raw rawDatastore
	var s hclconf.Section
	var diags hcl.Diagnostics
	if b != nil {
		s, diags = hclconf.Decode(b.Body, &raw)
		if s.Has("type") && !s.Set("type") {
			return diags // wrong type, already reported
		}
		c.Datastore.Type = s.OneOf("type", raw.Type, DefaultDatastoreType,
			[]string{DatastoreSQLite, DatastorePostgres}, &diags)
		if s.Set("type") && c.Datastore.Type != raw.Type {
			return diags // unknown type: the other settings cannot be judged
		}
	}
	switch c.Datastore.Type {
	case DatastoreSQLite:
		if s.Has("connection_string") {
			diags = append(diags, s.Errorf("connection_string", summaryConflictingSetting,
				"connection_string is for the postgres datastore only; sqlite uses path."))
		}
		c.Datastore.Path = filepath.Join(c.DataDir, DefaultSQLiteFile)
		if s.Set("path") {
			c.Datastore.Path = s.NonEmpty("path", raw.Path, &diags)
		}
	case DatastorePostgres:
		if s.Has("path") {
			diags = append(diags, s.Errorf("path", summaryConflictingSetting,
				"path is for the sqlite datastore only; postgres uses connection_string."))
		}
		switch {
		case !s.Has("connection_string"):
			diags = append(diags, s.Errorf("connection_string", "Missing required argument",
				"The postgres datastore needs a connection_string, such as \"postgres://hallmark@db.example.org/hallmark\"."))
		case s.Set("connection_string"):
			c.Datastore.ConnectionString = s.NonEmpty("connection_string", raw.ConnectionString, &diags)
		}
	}
	return diags
}
