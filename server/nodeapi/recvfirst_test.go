package nodeapi

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
)

// fakeAttestStream answers Recv from recv, blocking until ctx ends when
// recv is nil (a caller who sends nothing).
type fakeAttestStream struct {
	ctx  context.Context
	recv func() (*apiv1.AttestRequest, error)
}

func (f *fakeAttestStream) Send(*apiv1.AttestResponse) error { return nil }
func (f *fakeAttestStream) Context() context.Context         { return f.ctx }
func (f *fakeAttestStream) Recv() (*apiv1.AttestRequest, error) {
	if f.recv == nil {
		<-f.ctx.Done()
		return nil, status.FromContextError(f.ctx.Err()).Err()
	}
	return f.recv()
}

func TestRecvFirst(t *testing.T) {
	params := &apiv1.AttestRequest{Step: &apiv1.AttestRequest_Params{Params: &apiv1.AttestParams{Csr: []byte{1}}}}
	tests := []struct {
		name     string
		recv     func() (*apiv1.AttestRequest, error)
		wantCode codes.Code
		wantMsg  string
	}{
		{name: "message in time", recv: func() (*apiv1.AttestRequest, error) { return params, nil }, wantCode: codes.OK},
		{name: "nothing sent", wantCode: codes.DeadlineExceeded, wantMsg: "no attestation parameters within 50ms"},
		{name: "message too large keeps its code", recv: func() (*apiv1.AttestRequest, error) {
			return nil, status.Error(codes.ResourceExhausted, "grpc: received message larger than max (15728645 vs. 524288)")
		}, wantCode: codes.ResourceExhausted, wantMsg: "larger than max"},
		{name: "other receive errors", recv: func() (*apiv1.AttestRequest, error) {
			return nil, status.Error(codes.Canceled, "context canceled")
		}, wantCode: codes.InvalidArgument, wantMsg: "receive attestation parameters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Server{cfg: Config{FirstMessageTimeout: 50 * time.Millisecond}}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel() // ends the blocked Recv, as gRPC does when the handler returns
			start := time.Now()
			got, err := s.recvFirst(ctx, &fakeAttestStream{ctx: ctx, recv: tt.recv})
			if status.Code(err) != tt.wantCode || !strings.Contains(status.Convert(err).Message(), tt.wantMsg) {
				t.Fatalf("recvFirst: %v; want %v %q", err, tt.wantCode, tt.wantMsg)
			}
			if tt.wantCode == codes.OK && got != params {
				t.Fatalf("got %v", got)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("took %v", d)
			}
		})
	}
}
