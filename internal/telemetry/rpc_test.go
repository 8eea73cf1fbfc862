package telemetry_test

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/hallmarkid/hallmark/internal/telemetry"
)

// Unary calls and streams through a real gRPC server are observed by
// service, method and code; streams at their first response.
func TestRPCDuration(t *testing.T) {
	m := telemetry.New(telemetry.Config{Daemon: telemetry.Agent})
	srv := grpc.NewServer(m.ServerOptions()...)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	cc, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := healthpb.NewHealthClient(cc)
	ctx := context.Background()
	if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{Service: "unknown"}); err == nil {
		t.Fatal("unknown service is healthy")
	}
	w, err := c.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != nil {
		t.Fatal(err)
	}

	fams := scrape(t, serve(t, m, nil))
	tests := []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"service": "health", "method": "Check", "code": "OK"}, 1},
		{map[string]string{"service": "health", "method": "Check", "code": "NotFound"}, 1},
		{map[string]string{"service": "health", "method": "Watch", "code": "OK"}, 1},
	}
	for _, tt := range tests {
		if got := value(t, fams, "hallmark_rpc_duration_seconds", tt.labels); got != tt.want {
			t.Errorf("rpc %v = %v, want %v", tt.labels, got, tt.want)
		}
	}
}
