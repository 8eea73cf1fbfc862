package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/hallmarkid/hallmark/internal/busy"
)

// How connection attempts are paced. gRPC retries a failed connection by
// itself, 1 s after the first failure (the same second for every agent a
// server restart dropped: its first wait carries no jitter), then 1.6×
// more each time up to 2 minutes; calls made meanwhile fail at once
// without trying. That, not the agent's own reconnect backoff, set when
// a fleet came back after a restart (docs/scale.md). So the client keeps
// gRPC's own retries out of the way (channelRetry: later than any of its
// callers' retries) and a call that finds its channel failed replaces it
// with a new one, which connects at once: each retry of a caller (the
// push stream's backoff, the minting loop's) is one connection attempt,
// paced by that caller.
const channelRetry = 10 * time.Second

var connectParams = grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: channelRetry, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Minute},
	MinConnectTimeout: 20 * time.Second,
}

// BusyError is a call that failed because the server refused the
// connection at one of its limits on connections without an agent SVID
// (it answered with a busy refusal instead of a TLS handshake) and asked
// for a retry within RetryWithin: the server is up, and a retry within
// that window, at a random point of it, is likely to find room.
type BusyError struct {
	RetryWithin time.Duration
	Err         error // the call's error (a gRPC status, Unavailable)
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("client: server busy, retry within %v: %v", e.RetryWithin, e.Err)
}

func (e *BusyError) Unwrap() error { return e.Err }

// ErrNotListening marks a call that found no connection because nothing
// listened at the server's address (the connection was refused by its
// host: a server restarting, or stopped). Trying again costs the server's
// host a refused TCP connection, not a TLS handshake.
var ErrNotListening = errors.New("client: nothing listening at the server's address")

// channel is one gRPC channel and what its connection attempts met.
type channel struct {
	conn *grpc.ClientConn
	// busy holds the retry window of the last attempt's busy refusal, 0
	// when the last attempt was not refused as busy.
	busy atomic.Int64
}

// newChannel returns a channel to the server; tlsConf secures it.
func (c *Client) newChannel(tlsConf *tls.Config) (*channel, error) {
	ch := &channel{}
	conn, err := grpc.NewClient("passthrough:///"+c.cfg.Address,
		grpc.WithTransportCredentials(&busyCreds{TransportCredentials: credentials.NewTLS(tlsConf), ch: ch}),
		grpc.WithConnectParams(connectParams),
		grpc.WithKeepaliveParams(keepaliveParams),
	)
	if err != nil {
		return nil, fmt.Errorf("client: dial %s: %w", c.cfg.Address, err)
	}
	ch.conn = conn
	return ch, nil
}

// failed reports whether the channel's last connection attempt failed
// and gRPC waits to try again.
func (ch *channel) failed() bool { return ch.conn.GetState() == connectivity.TransientFailure }

// explain returns err, a call's error, as a *BusyError when the call
// found no connection because the server refused the last attempt as
// busy, and wrapping ErrNotListening when its host refused the
// connection. gRPC keeps only the text of a dial error (using a dialer of
// our own to see the error itself would lose gRPC's proxy support), and
// Go writes ECONNREFUSED as this text on every platform.
func (ch *channel) explain(err error) error {
	if err == nil || status.Code(err) != codes.Unavailable {
		return err
	}
	if d := time.Duration(ch.busy.Load()); d > 0 {
		return &BusyError{RetryWithin: d, Err: err}
	}
	if strings.Contains(status.Convert(err).Message(), "connect: connection refused") {
		return fmt.Errorf("%w: %w", ErrNotListening, err)
	}
	return err
}

// busyCreds notes, per channel, whether the server answered a
// connection attempt with a busy refusal instead of a TLS handshake.
type busyCreds struct {
	credentials.TransportCredentials
	ch *channel
}

func (b *busyCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := b.TransportCredentials.ClientHandshake(ctx, authority, raw)
	var window time.Duration
	if hdr := (tls.RecordHeaderError{}); err != nil && errors.As(err, &hdr) {
		window, _ = busy.Parse(hdr.RecordHeader[:])
	}
	b.ch.busy.Store(int64(window))
	if window > 0 {
		return nil, nil, fmt.Errorf("client: server busy (at its limit of connections without an agent SVID), retry within %v", window)
	}
	return conn, info, err
}

func (b *busyCreds) Clone() credentials.TransportCredentials {
	return &busyCreds{TransportCredentials: b.TransportCredentials.Clone(), ch: b.ch}
}
