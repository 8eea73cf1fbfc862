package agent

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

// HealthDetailTrailer is the trailer in which the agent's gRPC health
// service says why it is not serving (evicted, banned, SVID expired):
// `hallmark-agent healthcheck` prints it. A binary header ("-bin"), so any
// text passes.
const HealthDetailTrailer = "hallmark-health-detail-bin"

// maxHealthDetail bounds the reason sent in the trailer.
const maxHealthDetail = 1024

// healthWithDetail is the stock gRPC health service, whose Check also
// sends the reason the agent is not ready in HealthDetailTrailer. Stock
// clients see the stock answer.
type healthWithDetail struct {
	*health.Server
	ready func(context.Context) error
}

func (h healthWithDetail) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	resp, err := h.Server.Check(ctx, req)
	if err != nil || resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
		return resp, err
	}
	if rerr := h.ready(ctx); rerr != nil {
		detail := strings.ToValidUTF8(rerr.Error(), "?")
		if len(detail) > maxHealthDetail {
			detail = detail[:maxHealthDetail] + "..."
		}
		_ = grpc.SetTrailer(ctx, metadata.Pairs(HealthDetailTrailer, detail))
	}
	return resp, nil
}
