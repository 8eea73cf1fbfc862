package nodeapi

import (
	"time"

	"github.com/hallmarkid/hallmark/internal/busy"
)

// StopReconnectPerAgent is the share of the reconnect window a stopping
// server asks of its agents per connected agent: about what one agent's
// reconnect costs the server that takes it (a mutual-TLS handshake and
// the resumption of its stream) on two cores. A server with 1,000 agents
// asks them to spread over 1 s; one with ten, over 10 ms.
const StopReconnectPerAgent = time.Millisecond

// StopWindow returns the window over which n agents whose streams a
// stopping server ends should spread their first reconnect.
func StopWindow(n int) time.Duration {
	return min(time.Duration(n)*StopReconnectPerAgent, busy.MaxWindow)
}
