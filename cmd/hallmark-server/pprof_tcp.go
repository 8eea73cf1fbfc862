//go:build pprof

// Profiling for load benchmarks only (`make bench-fleet PPROF=1` builds
// with -tags pprof): released binaries are built without the tag and hold
// no profiling endpoint at all. With the tag, HALLMARK_PPROF_ADDR (a
// loopback host:port) makes `hallmark-server run` serve net/http/pprof.
package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
)

func init() {
	addr := os.Getenv("HALLMARK_PPROF_ADDR")
	if addr == "" || len(os.Args) < 2 || os.Args[1] != "run" {
		return // the daemon only, not the admin commands
	}
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		fmt.Fprintf(os.Stderr, "hallmark-server: HALLMARK_PPROF_ADDR %q must be a loopback host:port\n", addr)
		os.Exit(2)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "hallmark-server: pprof listener: %v\n", err)
		os.Exit(2)
	}
	go func() { _ = http.Serve(l, mux) }() //nolint:gosec // loopback, benchmark builds only
}
