package buildinfo_test

import (
	"strings"
	"testing"

	"github.com/hallmarkid/hallmark/internal/buildinfo"
)

func TestVersion(t *testing.T) {
	if got := buildinfo.Version("1.2.3"); got != "1.2.3" {
		t.Errorf("Version(linked) = %q, want the linked version", got)
	}
	// A test binary has no module version: a development build.
	if got := buildinfo.Version(""); !strings.HasPrefix(got, "devel") {
		t.Errorf("Version(\"\") = %q, want a devel version", got)
	}
}
