package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hallmarkid/hallmark/agent"
	"github.com/hallmarkid/hallmark/agent/config"
	"github.com/hallmarkid/hallmark/internal/hclconf"
)

// configFlags are SPIRE's agent `run` and `validate` flags that map onto
// the configuration file (they override it).
type configFlags struct {
	path, joinToken, joinTokenFile, logLevel, dataDir  *string
	trustBundlePath, trustBundleURL, trustBundleFormat *string
	expandEnv                                          *bool
}

func defineConfigFlags(fs *flag.FlagSet) configFlags {
	return configFlags{
		path:            fs.String("config", "conf/agent.hcl", "path to the agent configuration file"),
		joinToken:       fs.String("joinToken", "", "join token (overrides the file's join_token)"),
		joinTokenFile:   fs.String("joinTokenFile", "", "path to a file holding the join token (overrides the file's join_token)"),
		expandEnv:       fs.Bool("expandEnv", false, "expand $VAR and ${VAR} in the configuration file from the environment before parsing it"),
		logLevel:        fs.String("logLevel", "", "override log_level: debug, info, warn or error"),
		dataDir:         fs.String("dataDir", "", "override data_dir"),
		trustBundlePath: fs.String("trustBundle", "", "override trust_bundle_path: the file of the server's CA bundle"),
		trustBundleURL: fs.String("trustBundleUrl", "", "override trust_bundle_url: an https:// URL to download the server's CA bundle from "+
			"before each first attestation (SPIRE's; the download must be authentic: web PKI)"),
		trustBundleFormat: fs.String("trustBundleFormat", "", "override trust_bundle_format: pem or spiffe"),
	}
}

// maxJoinTokenFile bounds a -joinTokenFile.
const maxJoinTokenFile = 4096

// load reads the configuration file with the flags applied.
func (f configFlags) load() (*config.Config, error) {
	if *f.trustBundlePath != "" && *f.trustBundleURL != "" {
		return nil, errors.New("-trustBundle and -trustBundleUrl are mutually exclusive")
	}
	token := *f.joinToken
	if *f.joinTokenFile != "" {
		if token != "" {
			return nil, errors.New("-joinToken and -joinTokenFile are mutually exclusive")
		}
		fh, err := os.Open(*f.joinTokenFile)
		if err != nil {
			return nil, fmt.Errorf("-joinTokenFile: %w", err)
		}
		b, err := io.ReadAll(io.LimitReader(fh, maxJoinTokenFile+1))
		fh.Close()
		if err != nil {
			return nil, fmt.Errorf("-joinTokenFile: %w", err)
		}
		if len(b) > maxJoinTokenFile {
			return nil, fmt.Errorf("-joinTokenFile %s: larger than %d bytes", *f.joinTokenFile, maxJoinTokenFile)
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return nil, fmt.Errorf("-joinTokenFile %s: empty", *f.joinTokenFile)
		}
	}
	var opts []config.Option
	if token != "" {
		opts = append(opts, config.WithJoinToken(token))
	}
	var cfg *config.Config
	var err error
	if *f.expandEnv {
		src, err := hclconf.ReadFile(*f.path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if cfg, err = config.Parse(*f.path, []byte(os.ExpandEnv(string(src))), opts...); err != nil {
			return nil, err
		}
	} else if cfg, err = config.Load(*f.path, opts...); err != nil {
		return nil, err
	}
	if *f.logLevel != "" {
		if _, err := hclconf.ParseLogLevel(*f.logLevel); err != nil {
			return nil, fmt.Errorf("-logLevel: %w", err)
		}
		cfg.LogLevel = *f.logLevel
	}
	if *f.dataDir != "" {
		cfg.DataDir = *f.dataDir
	}
	return cfg, f.applyTrustBundle(cfg)
}

// applyTrustBundle applies -trustBundle, -trustBundleUrl and
// -trustBundleFormat with the checks the file's settings get: a bundle
// source replaces the file's (path or URL), never insecure_bootstrap.
func (f configFlags) applyTrustBundle(cfg *config.Config) error {
	if *f.trustBundlePath != "" || *f.trustBundleURL != "" {
		if cfg.InsecureBootstrap {
			return errors.New("-trustBundle/-trustBundleUrl: the configuration sets insecure_bootstrap = true; remove it to bootstrap from a bundle")
		}
		cfg.TrustBundlePath, cfg.TrustBundleURL = *f.trustBundlePath, *f.trustBundleURL
	}
	if *f.trustBundleURL != "" {
		if err := config.CheckTrustBundleURL(cfg.TrustBundleURL, cfg.TrustBundleURLAllowLoopbackHTTP); err != nil {
			return fmt.Errorf("-trustBundleUrl: %w", err)
		}
	}
	switch *f.trustBundleFormat {
	case "":
	case config.TrustBundleFormatPEM, config.TrustBundleFormatSPIFFE:
		cfg.TrustBundleFormat = *f.trustBundleFormat
	default:
		return fmt.Errorf("-trustBundleFormat %q: want %s or %s", *f.trustBundleFormat, config.TrustBundleFormatPEM, config.TrustBundleFormatSPIFFE)
	}
	return nil
}

// validateConfig is `hallmark-agent validate`: everything start-up checks
// about the configuration, without touching data_dir, the TPM or the
// network.
func validateConfig(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	cf := defineConfigFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	if err := agent.Validate(cfg); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Configuration %s is valid.\n", *cf.path)
	return nil
}
