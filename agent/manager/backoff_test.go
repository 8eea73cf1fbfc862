package manager

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hallmarkid/hallmark/agent/client"
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

// TestBackoffAfterBusy: a connection the server refused as busy is
// retried at a random point of the window it asked for (capped), and does
// not grow the step, which other failures still do.
func TestBackoffAfterBusy(t *testing.T) {
	var b Backoff
	busyErr := fmt.Errorf("client: sync: %w", &client.BusyError{RetryWithin: 2 * time.Second, Err: status.Error(codes.Unavailable, "x")})
	var over time.Duration
	for range 200 {
		d := b.After(busyErr)
		if d < reconnectFloor || d > 2*time.Second {
			t.Fatalf("busy wait %v, want in [%v, 2s]", d, reconnectFloor)
		}
		over = max(over, d)
	}
	if over < time.Second {
		t.Fatalf("200 busy waits all below 1s (max %v): not spread over the window", over)
	}
	if b.step > ReconnectMin {
		t.Fatalf("step %v after busy refusals only, want at most %v", b.step, ReconnectMin)
	}
	if d := b.After(&client.BusyError{RetryWithin: time.Hour}); d > maxHint {
		t.Fatalf("wait %v for an hour-long window, want at most %v", d, maxHint)
	}
	if d := b.After(status.Error(codes.Unavailable, "connection refused")); d > ReconnectMin {
		t.Fatalf("first ordinary failure: wait %v, want at most %v", d, ReconnectMin)
	}
	if d := b.After(status.Error(codes.Unavailable, "connection refused")); d > 2*ReconnectMin {
		t.Fatalf("second ordinary failure: wait %v, want at most %v", d, 2*ReconnectMin)
	}
}

// TestBackoffAfterStop: after a stream the server ended because it is
// stopping, the first reconnect is drawn over the server's window and the
// steps start again.
func TestBackoffAfterStop(t *testing.T) {
	b := Backoff{step: ReconnectMax}
	var over time.Duration
	for range 200 {
		d := b.AfterStop(time.Second)
		if d < reconnectFloor || d > time.Second {
			t.Fatalf("stop wait %v, want in [%v, 1s]", d, reconnectFloor)
		}
		over = max(over, d)
	}
	if over < 500*time.Millisecond {
		t.Fatalf("200 stop waits all below 500ms (max %v)", over)
	}
	if d := b.Next(); d > ReconnectMin {
		t.Fatalf("after a stop: next wait %v, want at most %v", d, ReconnectMin)
	}
	if d := b.AfterStop(0); d != reconnectFloor {
		t.Fatalf("zero window: wait %v, want the floor %v", d, reconnectFloor)
	}
}

// TestBackoffBoundsConfigured: Min and Max replace the defaults (the
// agent's attestation retries: 200 ms to 10 s).
func TestBackoffBoundsConfigured(t *testing.T) {
	b := Backoff{Min: 200 * time.Millisecond, Max: 10 * time.Second}
	for i, step := range []time.Duration{200 * time.Millisecond, 400 * time.Millisecond} {
		if d := b.Next(); d > step {
			t.Fatalf("wait %d = %v, want at most %v", i, d, step)
		}
	}
	for range 20 {
		b.Next()
	}
	if b.step != 10*time.Second {
		t.Fatalf("step %v, want the cap 10s", b.step)
	}
	b.Reset()
	if b.step != 200*time.Millisecond {
		t.Fatalf("step %v after Reset, want 200ms", b.step)
	}
}

// TestBackoffWhileNotListening: while nothing listens at the server's
// address (a restart: each attempt costs its host a refused TCP
// connection), the waits stay within NotListeningMax for the first
// attempts, so the agents find the server soon after it is back; a longer
// outage grows them to ReconnectMax as any other; Reset starts over.
func TestBackoffWhileNotListening(t *testing.T) {
	refused := fmt.Errorf("%w: %w", client.ErrNotListening, status.Error(codes.Unavailable, "connect: connection refused"))
	var b Backoff
	var over time.Duration
	for i := range notListeningFast {
		d := b.After(refused)
		if d > NotListeningMax {
			t.Fatalf("attempt %d: wait %v, want at most %v", i, d, NotListeningMax)
		}
		over = max(over, d)
	}
	if over < NotListeningMax/2 {
		t.Fatalf("%d waits all below %v (max %v): not spread up to the cap", notListeningFast, NotListeningMax/2, over)
	}
	for range 10 {
		b.After(refused)
	}
	if b.step != ReconnectMax {
		t.Fatalf("step %v after a long outage, want %v", b.step, ReconnectMax)
	}
	b.Reset()
	for range notListeningFast {
		if d := b.After(refused); d > NotListeningMax {
			t.Fatalf("after Reset: wait %v, want at most %v", d, NotListeningMax)
		}
	}
}
