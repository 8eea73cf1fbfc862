package manager

import (
	"testing"
	"time"
)

// TestBackoffBounds: the reconnect waits stay within [floor, step], the
// steps double up to ReconnectMax and no further (a fleet dropped by a
// restart must not wait 30 s for a server ready in one), the draws spread
// over the step, and Reset starts again.
func TestBackoffBounds(t *testing.T) {
	var b Backoff
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
		1600 * time.Millisecond, 3200 * time.Millisecond, ReconnectMax, ReconnectMax, ReconnectMax}
	for i, step := range want {
		d := b.Next()
		if d < reconnectFloor || d > step {
			t.Fatalf("wait %d = %v, want in [%v, %v]", i, d, reconnectFloor, step)
		}
	}
	for range 1000 {
		if d := b.Next(); d > ReconnectMax {
			t.Fatalf("wait %v beyond ReconnectMax %v", d, ReconnectMax)
		}
	}
	// Full jitter: draws at the cap cover the range, not just its top half.
	low, high := 0, 0
	for range 2000 {
		switch d := b.Next(); {
		case d < ReconnectMax/4:
			low++
		case d > 3*ReconnectMax/4:
			high++
		}
	}
	if low < 200 || high < 200 {
		t.Fatalf("2000 draws at the cap: %d below a quarter, %d above three quarters; want both near 500", low, high)
	}
	b.Reset()
	if d := b.Next(); d > ReconnectMin {
		t.Fatalf("after Reset: wait %v, want <= %v", d, ReconnectMin)
	}
	if d := spread(10 * time.Millisecond); d != reconnectFloor {
		t.Fatalf("spread(10ms) = %v, want the floor %v", d, reconnectFloor)
	}
}
