//go:build pprof

package devpprof

import (
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof on http.DefaultServeMux
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"syscall"
)

// HALLMARK_PPROF_DIR names the directory of the socket,
// <binary>-<pid>.sock, and of the CPU profiles SIGUSR1 starts and stops,
// <binary>-<pid>-<n>.pprof; unset, nothing is served.
func init() {
	dir := os.Getenv("HALLMARK_PPROF_DIR")
	if dir == "" {
		return
	}
	base := filepath.Join(dir, fmt.Sprintf("%s-%d", filepath.Base(os.Args[0]), os.Getpid()))
	if l, err := net.Listen("unix", base+".sock"); err == nil {
		go func() { _ = http.Serve(l, nil) }()
	} else {
		fmt.Fprintln(os.Stderr, "devpprof:", err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	go toggle(sig, base)
}

// toggle starts a CPU profile at one SIGUSR1 and writes it at the next.
func toggle(sig <-chan os.Signal, base string) {
	for n := 0; ; n++ {
		<-sig
		f, err := os.Create(fmt.Sprintf("%s-%d.pprof", base, n))
		if err != nil {
			fmt.Fprintln(os.Stderr, "devpprof:", err)
			continue
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "devpprof:", err)
			f.Close()
			continue
		}
		<-sig
		pprof.StopCPUProfile()
		f.Close()
	}
}
