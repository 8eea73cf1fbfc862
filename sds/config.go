package sds

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/hallmarkid/hallmark/agent/cache"
)

// Defaults for the resource names, as SPIRE and Istio use them.
const (
	DefaultSVIDName       = "default"
	DefaultBundleName     = "ROOTCA"
	DefaultAllBundlesName = "ALL"
)

// Istio's file-backed resource name prefixes.
const (
	fileRootPrefix = "file-root:"
	fileCertPrefix = "file-cert:"
)

// maxSocketPath is the longest unix socket path Linux accepts.
const maxSocketPath = 107

// Config configures a Handler.
type Config struct {
	// Cache is the agent's cache of entries, SVIDs and bundles. Required.
	Cache *cache.Cache
	// Attestor identifies callers from their kernel credentials. Required.
	Attestor CallerAttestor

	// DefaultSVIDName names the caller's default X.509-SVID ("default").
	DefaultSVIDName string
	// DefaultBundleName names the agent's own trust bundle ("ROOTCA").
	DefaultBundleName string
	// DefaultAllBundlesName names the own and federated bundles ("ALL").
	DefaultAllBundlesName string

	// FileDir is the only directory from which Istio's file-root: and
	// file-cert: names are served, each file only if the caller could read
	// it itself (every directory from "/" searchable, the file readable by
	// the caller's uid, gid or supplementary groups). Empty: such names are
	// refused with an error that says how to enable them.
	FileDir string
	// DisableSPIFFECertValidation sends bundles as trusted_ca to every
	// Envoy, never as the SPIFFE certificate validator.
	DisableSPIFFECertValidation bool

	// AllowMissingSecurityHeader accepts calls without the
	// "workload.spiffe.io: true" metadata on the sockets given to Register
	// (the Workload API socket). Default false: the header is required
	// there, as for the Workload API.
	AllowMissingSecurityHeader bool
	// ExtraSocketRequireSecurityHeader requires the header on the sockets
	// given to RegisterExtraSocket. Default false: Envoy as configured by
	// Istio never sends it.
	ExtraSocketRequireSecurityHeader bool

	// PendingWait bounds how long a caller whose entries have no SVID yet
	// (or an agent without a bundle yet) waits before PermissionDenied;
	// 0 means 10 s.
	PendingWait time.Duration
	// FilePollInterval is how often streams with file names re-read their
	// files to push changes; 0 means 5 s.
	FilePollInterval time.Duration

	// Metrics counts streams, responses and NACKs; nil counts nothing.
	Metrics Metrics
	// Log receives protocol events (NACKs at warn); nil discards them.
	Log *slog.Logger
	// Clock returns the current time; nil means time.Now. An SVID expired
	// by this clock is never sent.
	Clock func() time.Time
}

// HCLConfig is the agent configuration file's sds block:
//
//	sds {
//	  default_svid_name              = "default"
//	  default_bundle_name            = "ROOTCA"
//	  default_all_bundles_name       = "ALL"
//	  disable_spiffe_cert_validation = false
//	  file_dir                       = ""
//	  socket_path                    = "/run/secrets/workload-spiffe-uds/socket"
//	  allow_missing_security_header  = true
//	  socket_require_security_header = false
//	}
//
// SDS is always served on the Workload API socket; socket_path adds a
// second socket that serves SDS only.
type HCLConfig struct {
	DefaultSVIDName             string `hcl:"default_svid_name,optional"`
	DefaultBundleName           string `hcl:"default_bundle_name,optional"`
	DefaultAllBundlesName       string `hcl:"default_all_bundles_name,optional"`
	DisableSPIFFECertValidation bool   `hcl:"disable_spiffe_cert_validation,optional"`
	FileDir                     string `hcl:"file_dir,optional"`
	ExtraSocketPath             string `hcl:"socket_path,optional"`
	AllowMissingSecurityHeader  *bool  `hcl:"allow_missing_security_header,optional"` // nil: true
	SocketRequireSecurityHeader bool   `hcl:"socket_require_security_header,optional"`
}

// Config returns the Handler configuration c describes, with defaults
// filled in. Cache, Attestor, Log and Clock are left for the caller.
func (c HCLConfig) Config() Config {
	cfg := Config{
		DefaultSVIDName:                  c.DefaultSVIDName,
		DefaultBundleName:                c.DefaultBundleName,
		DefaultAllBundlesName:            c.DefaultAllBundlesName,
		DisableSPIFFECertValidation:      c.DisableSPIFFECertValidation,
		FileDir:                          c.FileDir,
		AllowMissingSecurityHeader:       c.AllowMissingSecurityHeader == nil || *c.AllowMissingSecurityHeader,
		ExtraSocketRequireSecurityHeader: c.SocketRequireSecurityHeader,
	}
	cfg.setDefaults()
	return cfg
}

// Validate reports what is wrong with c, so that a bad sds block stops
// the agent at start-up. It checks names and paths without touching the
// file system; New checks that file_dir exists.
func (c HCLConfig) Validate() error {
	cfg := c.Config()
	if err := cfg.validateNames(); err != nil {
		return err
	}
	if c.FileDir != "" && !filepath.IsAbs(c.FileDir) {
		return fmt.Errorf("sds: file_dir %q must be an absolute path", c.FileDir)
	}
	if p := c.ExtraSocketPath; p != "" {
		switch {
		case !filepath.IsAbs(p):
			return fmt.Errorf("sds: socket_path %q must be an absolute path", p)
		case len(p) > maxSocketPath:
			return fmt.Errorf("sds: socket_path is %d bytes, longer than the %d a unix socket allows", len(p), maxSocketPath)
		}
	}
	return nil
}

// Metrics receives SDS counts; *telemetry.Metrics satisfies it.
type Metrics interface {
	// StreamOpened is called with "sds" when a stream opens; it returns
	// the function to call when it closes.
	StreamOpened(kind string) (closed func())
	SDSPushed()
	SDSNACKed()
}

type nopMetrics struct{}

func (nopMetrics) StreamOpened(string) func() { return func() {} }
func (nopMetrics) SDSPushed()                 {}
func (nopMetrics) SDSNACKed()                 {}

func (c *Config) setDefaults() {
	if c.Metrics == nil {
		c.Metrics = nopMetrics{}
	}
	if c.DefaultSVIDName == "" {
		c.DefaultSVIDName = DefaultSVIDName
	}
	if c.DefaultBundleName == "" {
		c.DefaultBundleName = DefaultBundleName
	}
	if c.DefaultAllBundlesName == "" {
		c.DefaultAllBundlesName = DefaultAllBundlesName
	}
	if c.PendingWait <= 0 {
		c.PendingWait = 10 * time.Second
	}
	if c.FilePollInterval <= 0 {
		c.FilePollInterval = 5 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
}

// validateNames checks that the configured names are distinct and cannot
// be mistaken for another kind of name.
func (c *Config) validateNames() error {
	names := []struct{ key, val string }{
		{"default_svid_name", c.DefaultSVIDName},
		{"default_bundle_name", c.DefaultBundleName},
		{"default_all_bundles_name", c.DefaultAllBundlesName},
	}
	seen := map[string]string{}
	for _, n := range names {
		switch {
		case strings.HasPrefix(n.val, "spiffe://"), strings.HasPrefix(n.val, fileRootPrefix), strings.HasPrefix(n.val, fileCertPrefix):
			return fmt.Errorf("sds: %s %q would be read as a SPIFFE ID or an Istio file name", n.key, n.val)
		case n.val == "*":
			return fmt.Errorf("sds: %s %q is the xDS wildcard", n.key, n.val)
		case len(n.val) > maxNameLen:
			return fmt.Errorf("sds: %s is longer than %d bytes", n.key, maxNameLen)
		}
		if other, dup := seen[n.val]; dup {
			return fmt.Errorf("sds: %s and %s are both %q", other, n.key, n.val)
		}
		seen[n.val] = n.key
	}
	return nil
}

func (c *Config) validate() error {
	if c.Cache == nil {
		return errors.New("sds: Cache is required")
	}
	if c.Attestor == nil {
		return errors.New("sds: Attestor is required")
	}
	if err := c.validateNames(); err != nil {
		return err
	}
	if c.FileDir != "" {
		if !filepath.IsAbs(c.FileDir) {
			return fmt.Errorf("sds: file_dir %q must be an absolute path", c.FileDir)
		}
		if err := checkDir(c.FileDir); err != nil {
			return fmt.Errorf("sds: file_dir: %w", err)
		}
	}
	return nil
}
