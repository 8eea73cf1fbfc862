package nodeapi

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hallmarkid/hallmark/internal/busy"
)

// StopReconnectPerAgent is the share of the reconnect window a stopping
// server asks of its agents per connected agent: about what one agent's
// reconnect costs the server that takes it (a mutual-TLS handshake and
// the resumption of its stream) on two cores. A server with 1,000 agents
// asks them to spread over 1 s; one with ten, over 10 ms.
const StopReconnectPerAgent = time.Millisecond

// StopWindow returns the window over which n agents whose streams a
// stopping server ends should spread their first reconnect.
func StopWindow(n int) time.Duration {
	return min(time.Duration(n)*StopReconnectPerAgent, busy.MaxWindow)
}

// endStopping ends a Sync stream because the server is stopping: with
// Unavailable (a reason to reconnect, not an eviction) and the trailer
// asking the agent to spread its reconnect over EndStreams' window.
func (s *Server) endStopping(stream grpc.ServerStream) error {
	stream.SetTrailer(busy.StopTrailerMD(time.Duration(s.stopWindow.Load())))
	return status.Error(codes.Unavailable, "server stopping; reconnect")
}
