package agent

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

// The health service says why the agent is not serving, in a trailer the
// CLI prints; a serving agent sends none.
func TestHealthCheckSaysWhy(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "h.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	hs := health.NewServer()
	why := errors.New("evicted by the server (agent spiffe://example.org/agent/tpm/x is banned; ...)\xff" + strings.Repeat("x", 2000))
	var notReady atomic.Bool
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, healthWithDetail{hs, func(context.Context) error {
		if notReady.Load() {
			return why
		}
		return nil
	}})
	go func() { _ = srv.Serve(l) }()
	defer srv.Stop()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	check := func() (healthpb.HealthCheckResponse_ServingStatus, []string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var md metadata.MD
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Trailer(&md))
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetStatus(), md.Get(HealthDetailTrailer)
	}

	if st, d := check(); st != healthpb.HealthCheckResponse_SERVING || len(d) != 0 {
		t.Fatalf("serving: %v %q", st, d)
	}
	notReady.Store(true)
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	st, d := check()
	if st != healthpb.HealthCheckResponse_NOT_SERVING || len(d) != 1 || !strings.Contains(d[0], "is banned") ||
		len(d[0]) > maxHealthDetail+3 || !strings.HasSuffix(d[0], "...") {
		t.Fatalf("not serving: %v, detail %q", st, d)
	}
}
