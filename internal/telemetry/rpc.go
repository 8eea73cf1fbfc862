package telemetry

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ServerOptions returns the gRPC server options that record every call in
// hallmark_rpc_duration_seconds{service, method, code}. Service is the
// last element of the proto service name (SpiffeWorkloadAPI, Node, Admin,
// SecretDiscoveryService); methods are those the server registered, so
// the label set is bounded. A nil *Metrics returns none.
func (m *Metrics) ServerOptions() []grpc.ServerOption {
	if m == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(m.unary), grpc.ChainStreamInterceptor(m.stream)}
}

func (m *Metrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := h(ctx, req)
	m.observeRPC(info.FullMethod, status.Code(err), time.Since(start))
	return resp, err
}

func (m *Metrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	w := &timedStream{ServerStream: ss, m: m, method: info.FullMethod, start: time.Now()}
	err := h(srv, w)
	if w.sent.CompareAndSwap(false, true) {
		m.observeRPC(w.method, status.Code(err), time.Since(w.start))
	}
	return err
}

// timedStream observes the time to its first response.
type timedStream struct {
	grpc.ServerStream
	m      *Metrics
	method string
	start  time.Time
	sent   atomic.Bool // the first response was observed
}

func (s *timedStream) SendMsg(msg any) error {
	err := s.ServerStream.SendMsg(msg)
	if s.sent.CompareAndSwap(false, true) {
		s.m.observeRPC(s.method, status.Code(err), time.Since(s.start))
	}
	return err
}

// rpcKey identifies one series of hallmark_rpc_duration_seconds.
type rpcKey struct {
	fullMethod string
	code       codes.Code
}

// observeRPC records one call; the series of each method and code is
// resolved once (labels bounded, names converted) and then reused.
func (m *Metrics) observeRPC(fullMethod string, code codes.Code, took time.Duration) {
	k := rpcKey{fullMethod, code}
	o, ok := m.rpcSeries.Load(k)
	if !ok {
		service, method := splitMethod(fullMethod)
		o, _ = m.rpcSeries.LoadOrStore(k, m.rpc.WithLabelValues(m.bounded("rpc_service", service), m.boundedRPCName(method), code.String()))
	}
	o.(prometheus.Observer).Observe(took.Seconds())
}

// boundedRPCName admits method names ([A-Za-z0-9_]) up to the bound.
func (m *Metrics) boundedRPCName(method string) string {
	if method == "" || len(method) > 64 {
		return Other
	}
	for i := 0; i < len(method); i++ {
		c := method[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return Other
		}
	}
	return m.admitN("rpc_method", method, 4*MaxAttestorLabels)
}

// splitMethod turns "/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets"
// into ("secret_discovery_service", "StreamSecrets").
func splitMethod(full string) (service, method string) {
	full = strings.TrimPrefix(full, "/")
	svc, method, _ := strings.Cut(full, "/")
	if i := strings.LastIndexByte(svc, '.'); i >= 0 {
		svc = svc[i+1:]
	}
	return snake(svc), method
}

// snake turns CamelCase into snake_case ("SpiffeWorkloadAPI" ->
// "spiffe_workload_api").
func snake(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			if i > 0 && (s[i-1] >= 'a' && s[i-1] <= 'z' || i+1 < len(s) && s[i+1] >= 'a' && s[i+1] <= 'z' && s[i-1] >= 'A' && s[i-1] <= 'Z') {
				b.WriteByte('_')
			}
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String()
}
