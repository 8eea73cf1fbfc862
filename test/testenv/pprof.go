package testenv

import (
	"os"
	"syscall"
	"time"
)

// ToggleProfile starts or stops a CPU profile in the given daemons when
// they were built with -tags pprof (HALLMARK_BUILD_TAGS=pprof) and
// HALLMARK_PPROF_DIR is set; the profiles land in that directory (see
// internal/devpprof). Otherwise it does nothing.
func ToggleProfile(pids ...int) {
	if os.Getenv("HALLMARK_PPROF_DIR") == "" {
		return
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGUSR1)
	}
	// Let a stopping profile be written before the daemons may be stopped.
	time.Sleep(500 * time.Millisecond)
}
