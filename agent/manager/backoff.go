package manager

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"time"

	"github.com/hallmarkid/hallmark/agent/client"
)

// The push stream's reconnect policy. A server restart drops every
// agent's stream at once; the agents that the restarted server refuses
// while it is busy (the Node API admits a bounded number of connections
// before their TLS handshake completes: docs/operations.md, "Node API
// limits") retry later. With a 30 s cap the last agents of a 1,000-agent
// fleet waited 26 s for a server that was ready after 1.4 s
// (docs/scale.md); with a 5 s cap and full jitter they spread over the
// window and the tail is bounded by the cap. The cost: one agent retries
// a down server every 2.5 s on average once at the cap, so 1,000 agents
// make about 400 connection attempts a second, each refused by the kernel
// (nothing listening) or before any TLS work (over the admission cap);
// in the first 30 attempts while nothing listens, waits stay within
// NotListeningMax (about 2,000 refused connections a second for 1,000
// agents, for some 15 s), so that a restarted server is found within a
// second of being ready.
//
// Two answers from the server replace the next step (After): a stream
// the server ended because it is stopping carries the window over which
// its agents should spread their first reconnect, and a connection the
// server refused at its limits carries the window within which to retry
// (client.BusyError). Either says the server is up or about to be, so
// the step does not grow.
const (
	ReconnectMin = 100 * time.Millisecond
	ReconnectMax = 5 * time.Second
	// reconnectFloor is the shortest wait, so that a fleet never retries
	// in a tight loop.
	reconnectFloor = 50 * time.Millisecond
	// maxHint bounds a window the server asks for.
	maxHint = 30 * time.Second
	// NotListeningMax caps the steps while nothing listens at the
	// server's address (client.ErrNotListening), for the first
	// notListeningFast attempts of a run: a restarting server is back in
	// a second or two, and each attempt until then costs its host a
	// refused TCP connection, not a TLS handshake. Growing to 5 s there
	// made the agents find a server ready after 2 s at up to 5 s.
	NotListeningMax  = time.Second
	notListeningFast = 30
)

// Backoff is the reconnect policy: waits double from Min up to Max, each
// drawn uniformly from [reconnectFloor, the step] ("full jitter") so that
// agents dropped together do not come back together. The zero value
// (ReconnectMin to ReconnectMax) is ready to use.
type Backoff struct {
	// Min and Max bound the steps; zero means ReconnectMin, ReconnectMax.
	Min, Max time.Duration
	step     time.Duration
	// notListening counts attempts refused by the server's host since
	// the last Reset.
	notListening int
}

func (b *Backoff) bounds() (lo, hi time.Duration) {
	lo, hi = b.Min, b.Max
	if lo <= 0 {
		lo = ReconnectMin
	}
	if hi <= 0 {
		hi = ReconnectMax
	}
	return lo, max(lo, hi)
}

// Next returns how long to wait before the next attempt and moves to the
// next step.
func (b *Backoff) Next() time.Duration {
	lo, hi := b.bounds()
	if b.step < lo {
		b.step = lo
	}
	d := b.step
	b.step = min(2*b.step, hi)
	return spread(d)
}

// After returns how long to wait before retrying after err: a random
// point of the server's window if it refused the connection as busy
// (the step stays), else Next.
func (b *Backoff) After(err error) time.Duration {
	if be, ok := errors.AsType[*client.BusyError](err); ok && be.RetryWithin > 0 {
		return spread(min(be.RetryWithin, maxHint))
	}
	if errors.Is(err, client.ErrNotListening) {
		if b.notListening++; b.notListening <= notListeningFast {
			lo, _ := b.bounds()
			b.step = min(b.step, max(lo, NotListeningMax))
			return b.Next()
		}
	}
	return b.Next()
}

// AfterStop returns the wait before the first reconnect after a stream
// the server ended because it is stopping and asked its agents to spread
// their reconnects over window: a random point of it. The stream was
// healthy, so the steps start again.
func (b *Backoff) AfterStop(window time.Duration) time.Duration {
	b.Reset()
	return spread(min(window, maxHint))
}

// Reset starts again from Min (after a stream that was up long enough to
// count as healthy).
func (b *Backoff) Reset() { b.step, _ = b.bounds(); b.notListening = 0 }

// spread draws a wait uniformly from [reconnectFloor, d].
func spread(d time.Duration) time.Duration {
	if d <= reconnectFloor {
		return reconnectFloor
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	n := binary.LittleEndian.Uint64(b[:]) % uint64(d-reconnectFloor+1)
	return reconnectFloor + time.Duration(n)
}
