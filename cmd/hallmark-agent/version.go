package main

import "github.com/hallmarkid/hallmark/internal/buildinfo"

// version is the release this binary was built from, set at link time
// (go build -ldflags "-X main.version=1.2.3"); empty in a development
// build.
var version string

// versionString is what -version prints (SPIRE's -version: the version
// alone).
func versionString() string { return buildinfo.Version(version) }
