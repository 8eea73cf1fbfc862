package nodeapi

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
)

// recvFirst receives an attestation's first message within
// FirstMessageTimeout and ctx. Before it arrives nothing is known of the
// caller, so a caller who opens the stream and sends nothing must not
// hold it (and its goroutine) any longer. A message over the transport's
// size limit keeps its ResourceExhausted code.
func (s *Server) recvFirst(ctx context.Context, stream attestStream) (*apiv1.AttestRequest, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.FirstMessageTimeout)
	defer cancel()
	type recv struct {
		req *apiv1.AttestRequest
		err error
	}
	// The receiving goroutine ends when the handler returns: gRPC then
	// cancels the stream and Recv returns.
	ch := make(chan recv, 1)
	go func() {
		req, err := stream.Recv()
		ch <- recv{req, err}
	}()
	select {
	case <-ctx.Done():
		return nil, status.Errorf(codes.DeadlineExceeded, "no attestation parameters within %v", s.cfg.FirstMessageTimeout)
	case r := <-ch:
		switch {
		case r.err == nil:
			return r.req, nil
		case status.Code(r.err) == codes.ResourceExhausted:
			return nil, status.Errorf(codes.ResourceExhausted, "receive attestation parameters: %s", status.Convert(r.err).Message())
		default:
			return nil, status.Errorf(codes.InvalidArgument, "receive attestation parameters: %v", r.err)
		}
	}
}
