// Package buildinfo says which build a binary is: the version -version
// prints. It owns no state; each binary keeps its link-time variable
// (-ldflags "-X main.version=1.2.3") and passes it in.
package buildinfo

import (
	"runtime/debug"
	"strings"
)

// Version returns linked, the release set at link time, when it is set;
// otherwise (a development build) the module version and the VCS revision
// Go recorded, e.g. "devel+0123456789ab.dirty".
func Version(linked string) string {
	if linked != "" {
		return linked
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
