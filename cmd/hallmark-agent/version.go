package main

import (
	"runtime/debug"
	"strings"
)

// version is the release this binary was built from, set at link time
// (go build -ldflags "-X main.version=1.2.3"); empty in a development
// build, where versionString falls back to the module version and VCS
// revision Go records.
var version string

// versionString is what -version prints (SPIRE's -version: the version
// alone).
func versionString() string {
	if version != "" {
		return version
	}
	v := "devel"
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if mv := info.Main.Version; mv != "" && mv != "(devel)" {
		v = strings.TrimPrefix(mv, "v")
	}
	var rev string
	dirty := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		v += "+" + rev
		if dirty {
			v += ".dirty"
		}
	}
	return v
}
