package config

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/internal/hclconf"
)

// Defaults for settings left out of the file.
const (
	// DefaultSocketPath is the Workload API socket of an agent not running
	// as root (SPIRE's layout); RootSocketPath that of one running as root,
	// in /run where no other user can create the directory first.
	DefaultSocketPath = "/tmp/hallmark-agent/public/api.sock"
	RootSocketPath    = "/run/hallmark-agent/api.sock"
	// JoinTokenKind is the node attestor kind a join token implies.
	JoinTokenKind = "join_token"
	errPrefix     = "config"
)

// DefaultSocketPathFor returns the default socket_path of an agent running
// with effective uid euid.
func DefaultSocketPathFor(euid int) string {
	if euid == 0 {
		return RootSocketPath
	}
	return DefaultSocketPath
}

// Config is the agent's configuration, validated and with defaults applied.
type Config struct {
	TrustDomain   spiffeid.TrustDomain
	ServerAddress string // host:port of the server
	// TrustBundlePath is the PEM file of CA certificates the agent trusts
	// the server with on first contact. Empty only when InsecureBootstrap.
	TrustBundlePath string
	// TrustBundleURL is where the agent downloads that bundle instead
	// (https; http only to a loopback address with
	// TrustBundleURLAllowLoopbackHTTP). At most one of the two is set.
	TrustBundleURL                  string
	TrustBundleURLAllowLoopbackHTTP bool
	// TrustBundleFormat is how the bootstrap bundle (file or URL) is
	// encoded: "pem" (default) or "spiffe" (a SPIFFE bundle document).
	TrustBundleFormat string
	InsecureBootstrap bool
	DataDir           string
	SocketPath        string // Workload API unix socket
	AdminSocketPath   string // empty: no admin socket
	// JoinToken is the token from the file, or from WithJoinToken, which
	// takes precedence. It may hold a secret: do not log it.
	JoinToken string

	LogLevel  string // debug, info, warn or error
	LogFormat string // text or json
	LogFile   string // empty: the caller's fallback writer (stderr)

	// NodeAttestor is the one node attestor, for its collector to decode
	// with hclconf.DecodeBlock. When the file has no node_attestor block
	// it is an implied join_token block with an empty body positioned at
	// the agent block (a token is needed only when the agent has no usable
	// saved SVID).
	NodeAttestor hclconf.Block
	// WorkloadAttestors holds one block per workload_attestor kind, in
	// file order.
	WorkloadAttestors []hclconf.Block
	// SDS is the optional sds block (Envoy SDS settings), for the sds
	// package to decode; nil when absent.
	SDS *hclconf.Block
	// Telemetry is the optional telemetry block (metrics and health
	// listener), for the telemetry package to decode; nil when absent.
	Telemetry *hclconf.Block
}

// Logger returns the logger the configuration asks for, writing to LogFile
// or, when that is empty, to fallback. Close the Closer at shutdown.
func (c *Config) Logger(fallback io.Writer) (*slog.Logger, io.Closer, error) {
	return hclconf.OpenLogger(c.LogLevel, c.LogFormat, c.LogFile, fallback)
}

// Option changes how a file is read.
type Option interface {
	apply(*options)
}

type options struct {
	joinToken string
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithJoinToken sets the join token, overriding join_token in the file (the
// -joinToken command-line flag). An empty token changes nothing.
func WithJoinToken(token string) Option {
	return optionFunc(func(o *options) { o.joinToken = token })
}

// Load reads and parses the configuration file at path.
func Load(path string, opts ...Option) (*Config, error) {
	src, err := hclconf.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", errPrefix, err)
	}
	return Parse(path, src, opts...)
}

type rawAgent struct {
	TrustDomain       string `hcl:"trust_domain"`
	ServerAddress     string `hcl:"server_address"`
	TrustBundlePath   string `hcl:"trust_bundle_path,optional"`
	InsecureBootstrap bool   `hcl:"insecure_bootstrap,optional"`
	TrustBundleURL    string `hcl:"trust_bundle_url,optional"`
	TrustBundleFormat string `hcl:"trust_bundle_format,optional"`
	AllowLoopbackHTTP bool   `hcl:"trust_bundle_url_allow_loopback_http,optional"`
	DataDir           string `hcl:"data_dir"`
	SocketPath        string `hcl:"socket_path,optional"`
	AdminSocketPath   string `hcl:"admin_socket_path,optional"`
	JoinToken         string `hcl:"join_token,optional"`
	LogLevel          string `hcl:"log_level,optional"`
	LogFormat         string `hcl:"log_format,optional"`
	LogFile           string `hcl:"log_file,optional"`
}

var fileSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "agent"},
		{Type: "node_attestor", LabelNames: []string{"kind"}},
		{Type: "workload_attestor", LabelNames: []string{"kind"}},
		{Type: "sds"},
		{Type: "telemetry"},
	},
}

// Parse parses src, the contents of the configuration file filename, and
// validates it. The error, if any, is an *hclconf.Error listing every
// problem with its file:line.
func Parse(filename string, src []byte, opts ...Option) (*Config, error) {
	var o options
	for _, opt := range opts {
		opt.apply(&o)
	}
	file, diags := hclconf.ParseFile(filename, src)
	if diags.HasErrors() {
		return nil, hclconf.DiagError(errPrefix, diags)
	}
	content, d := file.Body.Content(fileSchema)
	diags = append(diags, d...)
	top := file.Body.MissingItemRange()

	c := &Config{}
	var tokenAt *hcl.Range // where the join token came from, nil for the option
	agentAt := top
	if b := hclconf.Single(content.Blocks, "agent", true, top, &diags); b != nil {
		agentAt = b.DefRange
		tokenAt = c.agent(b.Body, &diags)
	}
	if o.joinToken != "" {
		c.JoinToken, tokenAt = o.joinToken, nil
		if err := checkJoinToken(o.joinToken); err != nil {
			diags = append(diags, hclconf.Errorf(agentAt, "Invalid join token", "The join token given on the command line %v.", err))
		}
	}

	c.SDS = hclconf.Optional(content.Blocks, "sds", top, &diags)
	c.Telemetry = hclconf.Optional(content.Blocks, "telemetry", top, &diags)

	nodes := hclconf.Labelled(content.Blocks, "node_attestor", &diags)
	c.WorkloadAttestors = hclconf.Labelled(content.Blocks, "workload_attestor", &diags)
	switch {
	case len(nodes) > 1:
		for _, n := range nodes[1:] {
			diags = append(diags, hclconf.Errorf(n.Range, "Duplicate node_attestor block",
				"An agent has exactly one node attestor; %q was already chosen at %s.", nodes[0].Kind, nodes[0].Pos()))
		}
	case len(nodes) == 1:
		c.NodeAttestor = nodes[0]
		if c.JoinToken != "" && nodes[0].Kind != JoinTokenKind {
			from := "on the command line"
			at := nodes[0].Range
			if tokenAt != nil {
				from, at = "by join_token", *tokenAt
			}
			diags = append(diags, hclconf.Errorf(at, "Conflicting settings",
				"A join token is given %s, but node_attestor %q is configured at %s; a join token implies node_attestor %q.",
				from, nodes[0].Kind, nodes[0].Pos(), JoinTokenKind))
		}
	case len(content.Blocks.OfType("node_attestor")) == 0: // else rejected above
		// join_token is implied, with or without a token: an agent that
		// attested with -joinToken restarts on its saved SVID without one
		// (it needs a token only to attest again).
		c.NodeAttestor = hclconf.Block{Type: "node_attestor", Kind: JoinTokenKind, Body: hcl.EmptyBody(), Range: agentAt}
	}

	if err := hclconf.DiagError(errPrefix, diags); err != nil {
		return nil, err
	}
	return c, nil
}

// agent decodes the agent block and returns where join_token was set, if
// it was.
func (c *Config) agent(body hcl.Body, diags *hcl.Diagnostics) *hcl.Range {
	var raw rawAgent
	s, d := hclconf.Decode(body, &raw)
	*diags = append(*diags, d...)

	c.TrustDomain = s.TrustDomain("trust_domain", raw.TrustDomain, diags)
	if s.Set("server_address") {
		if err := checkHostPort(raw.ServerAddress); err != nil {
			*diags = append(*diags, s.Errorf("server_address", "Invalid value", "server_address %q %v.", raw.ServerAddress, err))
		}
		c.ServerAddress = raw.ServerAddress
	}

	c.InsecureBootstrap = raw.InsecureBootstrap
	c.TrustBundlePath = raw.TrustBundlePath
	c.TrustBundleURL = raw.TrustBundleURL
	c.TrustBundleURLAllowLoopbackHTTP = raw.AllowLoopbackHTTP
	c.TrustBundleFormat = s.OneOf("trust_bundle_format", raw.TrustBundleFormat, TrustBundleFormatPEM,
		[]string{TrustBundleFormatPEM, TrustBundleFormatSPIFFE}, diags)
	badType := s.Has("trust_bundle_path") && !s.Set("trust_bundle_path") ||
		s.Has("insecure_bootstrap") && !s.Set("insecure_bootstrap") ||
		s.Has("trust_bundle_url") && !s.Set("trust_bundle_url")
	switch {
	case badType: // already reported
	case c.TrustBundlePath != "" && c.TrustBundleURL != "":
		*diags = append(*diags, s.Errorf("trust_bundle_url", "Conflicting settings",
			"trust_bundle_path and trust_bundle_url are mutually exclusive: set one."))
	case c.InsecureBootstrap && c.TrustBundlePath != "":
		*diags = append(*diags, s.Errorf("insecure_bootstrap", "Conflicting settings",
			"insecure_bootstrap = true and trust_bundle_path are mutually exclusive: set one."))
	case c.InsecureBootstrap && c.TrustBundleURL != "":
		*diags = append(*diags, s.Errorf("insecure_bootstrap", "Conflicting settings",
			"insecure_bootstrap = true and trust_bundle_url are mutually exclusive: set one."))
	case !c.InsecureBootstrap && s.Has("trust_bundle_path") && c.TrustBundlePath == "" && c.TrustBundleURL == "":
		*diags = append(*diags, s.Errorf("trust_bundle_path", "Invalid value",
			"trust_bundle_path must not be empty unless insecure_bootstrap = true."))
	case !c.InsecureBootstrap && c.TrustBundlePath == "" && c.TrustBundleURL == "":
		*diags = append(*diags, s.Errorf("trust_bundle_path", "Missing required argument",
			"The argument \"trust_bundle_path\" is required unless insecure_bootstrap = true (or trust_bundle_url is set)."))
	case c.TrustBundleURL != "":
		if err := CheckTrustBundleURL(c.TrustBundleURL, c.TrustBundleURLAllowLoopbackHTTP); err != nil {
			*diags = append(*diags, s.Errorf("trust_bundle_url", "Invalid value", "%v.", err))
		}
	}
	if c.TrustBundleURLAllowLoopbackHTTP && c.TrustBundleURL == "" {
		*diags = append(*diags, s.Errorf("trust_bundle_url_allow_loopback_http", "Conflicting settings",
			"trust_bundle_url_allow_loopback_http applies to trust_bundle_url only, which is not set."))
	}

	c.DataDir = s.NonEmpty("data_dir", raw.DataDir, diags)
	c.SocketPath = s.SocketPath("socket_path", raw.SocketPath, DefaultSocketPathFor(os.Geteuid()), diags)
	if s.Set("admin_socket_path") && raw.AdminSocketPath != "" {
		c.AdminSocketPath = s.SocketPath("admin_socket_path", raw.AdminSocketPath, "", diags)
		if c.AdminSocketPath == c.SocketPath {
			*diags = append(*diags, s.Errorf("admin_socket_path", "Conflicting settings",
				"admin_socket_path must differ from socket_path (%q).", c.SocketPath))
		}
	}

	var tokenAt *hcl.Range
	if s.Set("join_token") && raw.JoinToken != "" {
		if err := checkJoinToken(raw.JoinToken); err != nil {
			*diags = append(*diags, s.Errorf("join_token", "Invalid join token", "join_token %v.", err))
		} else {
			c.JoinToken = raw.JoinToken
			r := s.Range("join_token")
			tokenAt = &r
		}
	}

	c.LogLevel, c.LogFormat = s.CheckLogging(raw.LogLevel, raw.LogFormat, diags)
	c.LogFile = raw.LogFile
	return tokenAt
}

func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("is not host:port (such as \"127.0.0.1:8081\" or \"hallmark.example.org:8081\")")
	}
	if host == "" {
		return fmt.Errorf("has no host")
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("has port %q, not a number in 1-65535", port)
	}
	return nil
}

// checkJoinToken rejects tokens that cannot have come from the server: the
// check is about typing mistakes, not secrecy.
func checkJoinToken(tok string) error {
	if len(tok) > 256 {
		return fmt.Errorf("is %d bytes long, more than 256", len(tok))
	}
	if strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("contains spaces or control characters")
	}
	return nil
}

// Trust bundle formats.
const (
	TrustBundleFormatPEM    = "pem"
	TrustBundleFormatSPIFFE = "spiffe"
)

// CheckTrustBundleURL accepts an https URL, or with allowLoopbackHTTP an
// http URL whose host is a loopback IP address or "localhost". No user
// information, no fragment.
func CheckTrustBundleURL(raw string, allowLoopbackHTTP bool) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("trust_bundle_url %q is not an absolute URL without credentials or fragment", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		h := u.Hostname()
		ip := net.ParseIP(h)
		loop := h == "localhost" || ip != nil && ip.IsLoopback()
		switch {
		case !loop:
			return fmt.Errorf("trust_bundle_url %q must be https: plain http is accepted only to a loopback address", raw)
		case !allowLoopbackHTTP:
			return fmt.Errorf("trust_bundle_url %q is plain http: set trust_bundle_url_allow_loopback_http = true to accept it from a loopback address", raw)
		}
		return nil
	}
	return fmt.Errorf("trust_bundle_url %q must be an https URL", raw)
}
