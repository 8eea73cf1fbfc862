package admission

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// Source is the unit limits are counted by: an IPv4 address, or the /64
// an IPv6 address lies in (one host commonly holds a whole /64).
type Source = netip.Prefix

// SourceOf returns the source of a peer address; ok is false for
// addresses that are not IP (never the case on the TCP listener).
func SourceOf(addr net.Addr) (s Source, ok bool) {
	var ap netip.AddrPort
	switch a := addr.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	default:
		var err error
		if ap, err = netip.ParseAddrPort(addr.String()); err != nil {
			return Source{}, false
		}
	}
	ip := ap.Addr().Unmap()
	if !ip.IsValid() {
		return Source{}, false
	}
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, err := ip.WithZone("").Prefix(bits)
	return p, err == nil
}

// maxBuckets bounds the bucket table; past it (after dropping full
// buckets) an unknown source is refused: fail closed under a flood from
// more sources than that within one refill period.
const maxBuckets = 1 << 16

// buckets is a token bucket per source.
type buckets struct {
	rate  float64 // tokens per second
	burst float64

	mu        sync.Mutex // guards the fields that follow
	m         map[Source]bucket
	lastPrune time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newBuckets(rate float64, burst int) *buckets {
	return &buckets{rate: rate, burst: float64(burst), m: make(map[Source]bucket)}
}

// take reports whether src had a token at now, and spends it.
func (b *buckets) take(src Source, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Sub(b.lastPrune) > time.Minute {
		b.prune(now)
	}
	e, ok := b.m[src]
	if !ok {
		if len(b.m) >= maxBuckets {
			b.prune(now)
			if len(b.m) >= maxBuckets {
				return false
			}
		}
		e = bucket{tokens: b.burst, at: now}
	}
	if d := now.Sub(e.at); d > 0 {
		e.tokens = min(b.burst, e.tokens+d.Seconds()*b.rate)
	}
	e.at = now
	ok = e.tokens >= 1
	if ok {
		e.tokens--
	}
	b.m[src] = e
	return ok
}

// prune drops buckets that have refilled: they are the same as absent.
func (b *buckets) prune(now time.Time) {
	b.lastPrune = now
	for k, e := range b.m {
		if e.tokens+now.Sub(e.at).Seconds()*b.rate >= b.burst {
			delete(b.m, k)
		}
	}
}

// len returns the number of sources tracked.
func (b *buckets) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.m)
}
