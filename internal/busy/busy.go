// Package busy carries the Node API's "come back within" hints from the
// server to its agents, so that a fleet the server cannot take all at once
// spreads its reconnects instead of retrying together.
//
// The busy refusal is what the
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
// The stop trailer (StopTrailer) ends a Sync stream the server closes
// because it is stopping: the window, in milliseconds, over which its
// agents should spread their first reconnect.
//
// It must import nothing of the server or the agent: both use it.
package busy

import (
	"strconv"
	"time"

	"google.golang.org/grpc/metadata"
)

// StopTrailer is the trailer key of the stop window.
const StopTrailer = "hallmark-reconnect-within-ms"

// StopTrailerMD returns the trailer asking to reconnect within window.
func StopTrailerMD(window time.Duration) metadata.MD {
	return metadata.Pairs(StopTrailer, strconv.FormatInt(max(0, window.Milliseconds()), 10))
}

// StopWindow returns the stop window a stream's trailer carries: a whole
// number of milliseconds from 0 to MaxWindow; ok is false if there is
// none or it is malformed.
func StopWindow(md metadata.MD) (time.Duration, bool) {
	v := md.Get(StopTrailer)
	if len(v) != 1 || len(v[0]) == 0 || len(v[0]) > 6 {
		return 0, false
	}
	n, err := strconv.Atoi(v[0])
	if err != nil || n < 0 || time.Duration(n)*time.Millisecond > MaxWindow {
		return 0, false
	}
	return time.Duration(n) * time.Millisecond, true
}

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
