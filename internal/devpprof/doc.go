// Package devpprof serves net/http/pprof on a unix socket,
// $HALLMARK_PPROF_DIR/<binary>-<pid>.sock, in binaries built with
// -tags pprof, for profiling the real daemons under a benchmark (see
// docs/performance.md, "Profiling"). Release builds do not contain it: its
// code is behind the build tag.
package devpprof
