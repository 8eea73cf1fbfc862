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
// the configuration file (they override it), and one that does not map
// and is refused by name.
type configFlags struct {
	path, joinToken, joinTokenFile, logLevel, dataDir, trustBundleURL *string
	expandEnv                                                         *bool
}

func defineConfigFlags(fs *flag.FlagSet) configFlags {
	return configFlags{
		path:           fs.String("config", "conf/agent.hcl", "path to the agent configuration file"),
		joinToken:      fs.String("joinToken", "", "join token (overrides the file's join_token)"),
		joinTokenFile:  fs.String("joinTokenFile", "", "path to a file holding the join token (overrides the file's join_token)"),
		expandEnv:      fs.Bool("expandEnv", false, "expand $VAR and ${VAR} in the configuration file from the environment before parsing it"),
		logLevel:       fs.String("logLevel", "", "override log_level: debug, info, warn or error"),
		dataDir:        fs.String("dataDir", "", "override data_dir"),
		trustBundleURL: fs.String("trustBundleUrl", "", "not supported: download the bundle and set trust_bundle_path (refused when set)"),
	}
}

// maxJoinTokenFile bounds a -joinTokenFile.
const maxJoinTokenFile = 4096

// load reads the configuration file with the flags applied.
func (f configFlags) load() (*config.Config, error) {
	if *f.trustBundleURL != "" {
		return nil, errors.New("-trustBundleUrl is not supported: fetch the server's bundle yourself (hallmark-server bundle show), check it, and set trust_bundle_path to the file")
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
	return cfg, nil
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
