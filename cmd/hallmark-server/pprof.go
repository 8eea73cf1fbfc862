//go:build pprof

package main

// Built with -tags pprof, the binary serves net/http/pprof on a unix socket
// under $HALLMARK_PPROF_DIR (see internal/devpprof).
import _ "github.com/hallmarkid/hallmark/internal/devpprof"
