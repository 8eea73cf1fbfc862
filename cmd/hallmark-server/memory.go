package main

import (
	"runtime/debug"
	"strconv"
)

// serverGCPercent is the server's default GOGC (docs/performance.md, "The
// server's memory"). A server's heap is almost all long-lived: the entry cache
// and, per connected agent, its TLS connection, gRPC transport and Sync
// stream, held for hours. With Go's default of 100 the heap grows to twice
// that, plus the goroutine stacks (four per agent), before it is
// collected, and the resident memory follows: at 1,000 agents and 21,003
// entries about 40 % of the server's RSS was collection headroom. At 50
// the headroom is halved (≈ 35 MiB less at that size); it costs nothing
// while idle (an idle server allocates little) and ≈ 13 % more CPU during
// an attestation storm (docs/scale.md, change 5). GOGC in the environment
// wins, as GOMEMLIMIT does for the soft memory limit, which is left to
// the operator.
const serverGCPercent = 50

// memoryPolicy applies serverGCPercent unless the environment (getenv)
// sets GOGC, and returns the GOGC in force and where it came from, for the
// start-up log.
func memoryPolicy(getenv func(string) string) (gogc string, source string) {
	if v := getenv("GOGC"); v != "" {
		return v, "environment"
	}
	debug.SetGCPercent(serverGCPercent)
	return strconv.Itoa(serverGCPercent), "default"
}
