package admission

import (
	"context"
	"errors"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// Fixed settings of the two servers.
const (
	// unauthenticatedStreams: an agent attests with one stream on a
	// connection of its own; a second stream is refused (REFUSED_STREAM)
	// before any goroutine is started for it.
	unauthenticatedStreams = 1
	// authenticatedStreams bounds one agent's concurrent calls (a gRPC
	// client queues past it).
	authenticatedStreams = 1024
	// maxHeaderList bounds request headers before authentication
	// (gRPC's default is 16 MiB).
	maxHeaderList = 16 << 10
	// window is the static HTTP/2 flow-control window, per stream and per
	// connection, of unauthenticated connections: what a client can make
	// the server buffer beyond what a handler has read. Static windows
	// also turn off gRPC's BDP estimation, which grows them to 16 MiB.
	window = 64 << 10
	// readBuffer is the read buffer of unauthenticated connections.
	readBuffer = 8 << 10
	// pingMinTime is the shortest interval between client pings allowed
	// (agents ping every 30 s); faster pingers are sent GOAWAY.
	pingMinTime = 10 * time.Second
)

// UnauthenticatedOptions returns the options of the gRPC server serving
// the Unauthenticated listener; add interceptors and register services
// as usual.
func (g *Gate) UnauthenticatedOptions() []grpc.ServerOption {
	l := g.cfg.Limits
	return []grpc.ServerOption{
		grpc.Creds(handshaken{}),
		grpc.InTapHandle(g.tapUnauthenticated),
		grpc.ChainStreamInterceptor(g.streamInterceptor),
		grpc.MaxRecvMsgSize(l.MaxMessageSize),
		grpc.MaxConcurrentStreams(unauthenticatedStreams),
		grpc.MaxHeaderListSize(maxHeaderList),
		grpc.InitialWindowSize(window),
		grpc.InitialConnWindowSize(window),
		grpc.ReadBufferSize(readBuffer),
		grpc.SharedWriteBuffer(true),
		grpc.ConnectionTimeout(l.FirstMessageTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle:     l.FirstMessageTimeout,
			MaxConnectionAge:      l.FirstMessageTimeout + l.AttestationTimeout,
			MaxConnectionAgeGrace: l.FirstMessageTimeout,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: pingMinTime}),
	}
}

// AuthenticatedOptions returns the options of the gRPC server serving the
// Authenticated listener.
func (g *Gate) AuthenticatedOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.Creds(handshaken{}),
		grpc.InTapHandle(g.tapAuthenticated),
		grpc.ChainStreamInterceptor(g.streamInterceptor),
		grpc.MaxRecvMsgSize(AuthenticatedMaxMessageSize),
		grpc.MaxConcurrentStreams(authenticatedStreams),
		// An idle agent holds a Sync stream open for hours: no per-
		// connection read buffer (the TLS connection buffers a record
		// already; gRPC's bufio adds 32 KiB per agent, 27 MB of a
		// 1,000-agent server's heap) and a write buffer borrowed only
		// while writing (docs/scale.md).
		grpc.ReadBufferSize(0),
		grpc.SharedWriteBuffer(true),
		// Server pings find agents that vanished without closing.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: time.Minute, Timeout: 20 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: pingMinTime, PermitWithoutStream: true}),
	}
}

// tapUnauthenticated runs on the connection's reader before a stream
// exists: only Attest is served, within the source's rate.
func (g *Gate) tapUnauthenticated(ctx context.Context, info *tap.Info) (context.Context, error) {
	if info.FullMethodName != g.cfg.AttestMethod {
		src, _ := peerSource(ctx)
		g.refuse(reasonMethod, src)
		return nil, status.Error(codes.Unauthenticated, "admission: an agent SVID is required")
	}
	return g.takeToken(ctx)
}

// tapAuthenticated applies the attestation rate to Attest calls made
// over an agent's connection too.
func (g *Gate) tapAuthenticated(ctx context.Context, info *tap.Info) (context.Context, error) {
	if info.FullMethodName != g.cfg.AttestMethod {
		return ctx, nil
	}
	return g.takeToken(ctx)
}

func (g *Gate) takeToken(ctx context.Context) (context.Context, error) {
	src, ok := peerSource(ctx)
	if !ok {
		return nil, status.Error(codes.Internal, "admission: no peer address")
	}
	if !g.buckets.take(src, time.Now()) {
		g.refuse(reasonRate, src)
		l := g.cfg.Limits
		return nil, status.Errorf(codes.ResourceExhausted, "admission: attestation rate limit for %s exceeded (%g/s, burst %d); retry later",
			src, l.AttestationRatePerSource, l.AttestationBurstPerSource)
	}
	return ctx, nil
}

func peerSource(ctx context.Context) (Source, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return Source{}, false
	}
	return SourceOf(p.Addr)
}

// InflightWait is how long an attestation past the in-flight bound waits
// for a slot before it is refused. The refused agent comes back after its
// backoff with a new connection, whose TLS handshake (on both sides) is
// the larger cost in an attestation storm; a waiting call holds only what
// its connection, counted against the connection bounds, holds already
// (at most one stream per connection), so the wait moves no bound.
const InflightWait = time.Second

// streamInterceptor bounds attestations in flight; past the bound a call
// waits up to InflightWait for a slot (first come, first served), then is
// refused.
func (g *Gate) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if info.FullMethod != g.cfg.AttestMethod {
		return handler(srv, ss)
	}
	select {
	case g.inflight <- struct{}{}:
	default:
		g.waiting.Add(1)
		defer g.waiting.Add(-1)
		t := time.NewTimer(InflightWait)
		select {
		case g.inflight <- struct{}{}:
			t.Stop()
		case <-ss.Context().Done():
			t.Stop()
			return status.FromContextError(ss.Context().Err()).Err()
		case <-t.C:
			src, _ := peerSource(ss.Context())
			g.refuse(reasonInflight, src)
			return status.Errorf(codes.ResourceExhausted, "admission: %d attestations in flight, the most allowed; retry later", cap(g.inflight))
		}
	}
	defer func() { <-g.inflight }()
	return handler(srv, ss)
}

// handshaken is the transport security of connections whose TLS
// handshake the gate completed: it reports their TLS state as gRPC's TLS
// credentials would.
type handshaken struct{}

func (handshaken) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	gc, ok := c.(*gatedConn)
	if !ok {
		return nil, nil, errors.New("admission: connection did not come through the gate")
	}
	return gc, credentials.TLSInfo{State: gc.state, CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}, nil
}

func (handshaken) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("admission: server-side credentials only")
}

func (handshaken) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls", SecurityVersion: "1.2"}
}

func (handshaken) Clone() credentials.TransportCredentials { return handshaken{} }

func (handshaken) OverrideServerName(string) error { return nil }
