package admission

import (
	"net"
	"time"

	"github.com/hallmarkid/hallmark/internal/busy"
)

// A connection refused at the connection limits (before any TLS work) is
// answered with a busy refusal (internal/busy): five bytes telling the
// client that the server is up but full, and within what window to come
// back, instead of a connection closed without a word, which a client
// cannot tell from a server that is down or broken. The agent then
// retries at a random point of that window (docs/operations.md, "Agent
// reconnect"). Writing it costs the server what closing the connection
// cost: no TLS, no goroutine, nothing held; the limits are unchanged.

// refuseBusy answers c with a busy refusal and closes it.
func (g *Gate) refuseBusy(c net.Conn) {
	r := busy.Refusal(g.retryWindow(time.Now()))
	// A new connection's send buffer is empty: the write does not wait;
	// the deadline only guards against the unexpected.
	_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	_, _ = c.Write(r[:])
	c.Close()
}

// handshook records how long a completed TLS handshake took, from accept.
func (g *Gate) handshook(d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.handshakeAvg == 0 {
		g.handshakeAvg = d
		return
	}
	g.handshakeAvg += (d - g.handshakeAvg) / 16
}

// retryWindow counts a refused connection and returns the window within
// which the refused should come back: the time the server needs, at the
// rate it completes handshakes lately (MaxConns at once, each taking
// handshakeAvg), for the handshakes in progress plus the connections
// refused in the last one to two seconds. Clients that spread their
// retries over it come back no faster than the server takes them.
func (g *Gate) retryWindow(now time.Time) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	if el := now.Sub(g.shedSince); el >= time.Second {
		g.shedPrev = g.shedNow
		if el >= 2*time.Second {
			g.shedPrev = 0
		}
		g.shedNow, g.shedSince = 0, now
	}
	g.shedNow++
	backlog := g.cfg.Limits.MaxConns + g.shedNow + g.shedPrev
	w := time.Duration(int64(g.handshakeAvg) * int64(backlog) / int64(g.cfg.Limits.MaxConns))
	return min(max(w, busy.Unit), busy.MaxWindow)
}
