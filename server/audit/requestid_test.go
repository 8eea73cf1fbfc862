package audit_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/hallmarkid/hallmark/server/audit"
)

func TestUnaryInterceptor(t *testing.T) {
	tests := []struct {
		name     string
		incoming string
		wantSame bool
	}{
		{name: "caller's ID kept", incoming: "abc-123", wantSame: true},
		{name: "none generates", incoming: ""},
		{name: "malformed replaced", incoming: "evil\nid"},
		{name: "too long replaced", incoming: strings.Repeat("a", audit.MaxRequestIDLen+1)},
	}
	icpt := audit.UnaryServerInterceptor()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.incoming != "" {
				ctx = metadata.NewIncomingContext(ctx, metadata.Pairs(audit.RequestIDHeader, tt.incoming))
			}
			var got string
			_, err := icpt(ctx, nil, &grpc.UnaryServerInfo{}, func(ctx context.Context, _ any) (any, error) {
				got = audit.RequestID(ctx)
				return nil, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantSame != (got == tt.incoming) {
				t.Errorf("ID %q for incoming %q", got, tt.incoming)
			}
			if !audit.ValidRequestID(got) {
				t.Errorf("invalid ID %q", got)
			}
		})
	}
}

type stream struct {
	grpc.ServerStream
	ctx    context.Context
	header metadata.MD
}

func (s *stream) Context() context.Context       { return s.ctx }
func (s *stream) SetHeader(md metadata.MD) error { s.header = md; return nil }

func TestStreamInterceptor(t *testing.T) {
	ss := &stream{ctx: metadata.NewIncomingContext(context.Background(), metadata.Pairs(audit.RequestIDHeader, "r1"))}
	var got string
	err := audit.StreamServerInterceptor()(nil, ss, &grpc.StreamServerInfo{}, func(_ any, s grpc.ServerStream) error {
		got = audit.RequestID(s.Context())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got != "r1" || ss.header.Get(audit.RequestIDHeader)[0] != "r1" {
		t.Errorf("ID %q, header %v", got, ss.header)
	}
}

func TestWithRequestID(t *testing.T) {
	if audit.RequestID(context.Background()) != "" {
		t.Error("ID in an empty context")
	}
	ctx := audit.WithRequestID(context.Background(), "")
	if id := audit.RequestID(ctx); len(id) != 32 {
		t.Errorf("generated ID %q", id)
	}
	ctx2, id := audit.EnsureRequestID(ctx)
	if ctx2 != ctx || id != audit.RequestID(ctx) {
		t.Error("EnsureRequestID replaced an existing ID")
	}
}
