package admission

import (
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/internal/busy"
)

// TestRetryWindow: the window is the time the server needs, at its recent
// handshake rate, for the handshakes in progress plus those refused in the
// last second or two; a quiet server asks for the shortest window, the
// longest is capped, and the count of refused connections ages out.
func TestRetryWindow(t *testing.T) {
	l := DefaultLimits()
	l.MaxConns = 100
	g := &Gate{cfg: Config{Limits: l}}
	t0 := time.Unix(1000, 0)

	if w := g.retryWindow(t0); w != busy.Unit {
		t.Fatalf("no handshake timed yet: window %v, want %v", w, busy.Unit)
	}
	g.handshook(200 * time.Millisecond)
	for range 98 {
		g.retryWindow(t0)
	}
	// 100 in progress + 100 refused this second, 200 ms each, 100 at once.
	if w := g.retryWindow(t0.Add(500 * time.Millisecond)); w != 400*time.Millisecond {
		t.Fatalf("after 100 refusals: window %v, want 400ms", w)
	}
	// The next second still counts the last one's refusals...
	if w := g.retryWindow(t0.Add(1500 * time.Millisecond)); w != 402*time.Millisecond {
		t.Fatalf("a second later: window %v, want 402ms", w)
	}
	// ...two seconds of quiet forget them.
	if w := g.retryWindow(t0.Add(4 * time.Second)); w != 202*time.Millisecond {
		t.Fatalf("after a quiet spell: window %v, want 202ms", w)
	}
	// The average follows handshakes slowly (1/16 per handshake).
	g.handshook(1800 * time.Millisecond)
	if g.handshakeAvg != 300*time.Millisecond {
		t.Fatalf("handshake average %v, want 300ms", g.handshakeAvg)
	}
	g.handshakeAvg = time.Hour
	if w := g.retryWindow(t0.Add(4 * time.Second)); w != busy.MaxWindow {
		t.Fatalf("a very slow server: window %v, want the cap %v", w, busy.MaxWindow)
	}
}
