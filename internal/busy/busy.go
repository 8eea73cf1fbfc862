// Package busy is the Node API's "busy, retry within" refusal: what the
// server writes on a new TCP connection it will not take (its bounds on
// connections without an agent SVID are reached: docs/operations.md,
// "Node API limits") instead of closing it silently, so that an agent
// can tell a server at its limit from one that is down and come back
// when the server says it will have room, without a TLS handshake on
// either side.
//
// The refusal is five bytes, written before any TLS: "BUSY" and the
// window, in tenths of a second, within which to retry (1–255). A TLS
// client reads them as the header of its first record and fails with
// tls.RecordHeaderError carrying them (its type byte 'B' is no TLS
// record type), so a client that knows nothing of it fails as it would
// on a closed connection.
//
// It must import nothing of the server or the agent: both use it.
package busy

import "time"

// Len is the length of a refusal.
const Len = 5

// Unit is the resolution of the retry window; MaxWindow the longest
// window a refusal can carry.
const (
	Unit      = 100 * time.Millisecond
	MaxWindow = 255 * Unit
)

var magic = [4]byte{'B', 'U', 'S', 'Y'}

// Refusal returns the refusal asking to retry within window (rounded up
// to a Unit, at least one, at most MaxWindow).
func Refusal(window time.Duration) [Len]byte {
	n := (window + Unit - 1) / Unit
	n = max(1, min(n, MaxWindow/Unit))
	return [Len]byte{magic[0], magic[1], magic[2], magic[3], byte(n)}
}

// Parse reports whether b is a refusal and, if so, the window within
// which to retry.
func Parse(b []byte) (time.Duration, bool) {
	if len(b) != Len || [4]byte(b[:4]) != magic || b[4] == 0 {
		return 0, false
	}
	return time.Duration(b[4]) * Unit, true
}
