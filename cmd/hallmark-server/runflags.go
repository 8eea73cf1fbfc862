package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hallmarkid/hallmark/internal/hclconf"
	"github.com/hallmarkid/hallmark/server/config"
)

// configFlags are SPIRE's `run` and `validate` flags that map onto the
// configuration file: they override it after it is read.
type configFlags struct {
	path, logLevel, dataDir *string
	expandEnv               *bool
}

func defineConfigFlags(fs *flag.FlagSet) configFlags {
	return configFlags{
		path:      fs.String("config", "conf/server.hcl", "path to the server configuration file"),
		expandEnv: fs.Bool("expandEnv", false, "expand $VAR and ${VAR} in the configuration file from the environment before parsing it"),
		logLevel:  fs.String("logLevel", "", "override log_level: debug, info, warn or error"),
		dataDir:   fs.String("dataDir", "", "override data_dir (a SQLite datastore at <data_dir>/datastore.sqlite3 moves with it)"),
	}
}

// load reads the configuration file with the flags applied.
func (f configFlags) load() (*config.Config, error) {
	var cfg *config.Config
	if *f.expandEnv {
		src, err := hclconf.ReadFile(*f.path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if cfg, err = config.Parse(*f.path, []byte(os.ExpandEnv(string(src)))); err != nil {
			return nil, err
		}
	} else {
		var err error
		if cfg, err = config.Load(*f.path); err != nil {
			return nil, err
		}
	}
	if *f.logLevel != "" {
		if _, err := hclconf.ParseLogLevel(*f.logLevel); err != nil {
			return nil, fmt.Errorf("-logLevel: %w", err)
		}
		cfg.LogLevel = *f.logLevel
	}
	if *f.dataDir != "" {
		if cfg.Datastore.Type == config.DatastoreSQLite && filepath.Clean(cfg.Datastore.Path) == filepath.Join(cfg.DataDir, config.DefaultSQLiteFile) {
			cfg.Datastore.Path = filepath.Join(*f.dataDir, config.DefaultSQLiteFile)
		}
		cfg.DataDir = *f.dataDir
	}
	return cfg, nil
}
