package manager

import (
	"crypto/rand"
	"encoding/binary"
	"time"
)

// The push stream's reconnect policy. A server restart drops every
// agent's stream at once; the agents that the restarted server refuses
// while it is busy (the Node API admits a bounded number of connections
// before their TLS handshake completes: docs/operations.md, "Node API
// limits") retry later. With a 30 s cap the last agents of a 1,000-agent
// fleet waited 26 s for a server that was ready after 1.4 s
// (docs/scale.md); with a 5 s cap and full jitter they spread over the
// window and the tail is bounded by the cap. The cost: one agent retries
// a down server at most every 5 s on average 2.5 s, so 1,000 agents make
// about 400 connection attempts a second, each refused by the kernel
// (nothing listening) or before any TLS work (over the admission cap).
const (
	ReconnectMin = 100 * time.Millisecond
	ReconnectMax = 5 * time.Second
	// reconnectFloor is the shortest wait, so that a fleet never retries
	// in a tight loop.
	reconnectFloor = 50 * time.Millisecond
)

// Backoff is the reconnect policy: waits double from ReconnectMin up to
// ReconnectMax, each drawn uniformly from [reconnectFloor, the step]
// ("full jitter") so that agents dropped together do not come back
// together. The zero value is ready to use.
type Backoff struct {
	step time.Duration
}

// Next returns how long to wait before the next attempt and moves to the
// next step.
func (b *Backoff) Next() time.Duration {
	if b.step < ReconnectMin {
		b.step = ReconnectMin
	}
	d := b.step
	b.step = min(2*b.step, ReconnectMax)
	return spread(d)
}

// Reset starts again from ReconnectMin (after a stream that was up long
// enough to count as healthy).
func (b *Backoff) Reset() { b.step = ReconnectMin }

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
