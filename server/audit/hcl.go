package audit

import "fmt"

// HCLConfig is the server's `audit { ... }` block:
//
//	audit {
//	  path   = "/var/log/hallmark/audit.jsonl"
//	  stdout = false
//	  fsync  = "interval" # "always" | "interval" | "never"
//	}
type HCLConfig struct {
	Path   string `hcl:"path,optional"`
	Stdout bool   `hcl:"stdout,optional"`
	Fsync  string `hcl:"fsync,optional"`
}

// Config validates h and returns the Config it describes (Clock and Log
// are left for the caller).
func (h HCLConfig) Config() (Config, error) {
	switch h.Fsync {
	case "", FsyncAlways, FsyncInterval, FsyncNever:
	default:
		return Config{}, fmt.Errorf("audit: fsync %q: want %q, %q or %q", h.Fsync, FsyncAlways, FsyncInterval, FsyncNever)
	}
	if h.Path == "" && !h.Stdout {
		return Config{}, fmt.Errorf("audit: the audit block needs path, stdout = true, or both")
	}
	return Config{Path: h.Path, Stdout: h.Stdout, Fsync: h.Fsync}, nil
}
