package audit

import (
	"context"
	"crypto/rand"
	"encoding/hex"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// RequestIDHeader is the gRPC metadata key that carries a request ID, in
// requests (a caller's own ID, used when well-formed) and in response
// headers (the ID the server used).
const RequestIDHeader = "x-request-id"

// MaxRequestIDLen bounds a request ID taken from a caller.
const MaxRequestIDLen = 64

type requestIDKey struct{}

// NewRequestID returns a fresh random request ID (32 hex digits).
func NewRequestID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand panics rather)
	return hex.EncodeToString(b[:])
}

// WithRequestID returns ctx carrying id as its request ID. An empty or
// malformed id (see ValidRequestID) is replaced by a fresh one.
func WithRequestID(ctx context.Context, id string) context.Context {
	if !ValidRequestID(id) {
		id = NewRequestID()
	}
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns ctx's request ID, or "" when it has none; Record then
// generates one for the record.
func RequestID(ctx context.Context) string {
	if ctx == nil {
		return ""
	}
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// EnsureRequestID returns ctx with a request ID (its own, or a fresh one)
// and that ID, so several records about one request share it.
func EnsureRequestID(ctx context.Context) (context.Context, string) {
	if id := RequestID(ctx); id != "" {
		return ctx, id
	}
	ctx = WithRequestID(ctx, "")
	return ctx, RequestID(ctx)
}

// ValidRequestID reports whether id is 1..MaxRequestIDLen characters of
// [A-Za-z0-9._-], the only caller-chosen IDs accepted.
func ValidRequestID(id string) bool {
	if id == "" || len(id) > MaxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// incomingRequestID returns the caller's well-formed x-request-id, or a
// fresh ID.
func incomingRequestID(ctx context.Context) context.Context {
	var id string
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(RequestIDHeader); len(v) == 1 {
			id = v[0]
		}
	}
	return WithRequestID(ctx, id)
}

// UnaryServerInterceptor gives every unary call a request ID (the
// caller's x-request-id when well-formed, else a fresh one), and returns
// it in the x-request-id response header.
func UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx = incomingRequestID(ctx)
		_ = grpc.SetHeader(ctx, metadata.Pairs(RequestIDHeader, RequestID(ctx)))
		return handler(ctx, req)
	}
}

// StreamServerInterceptor is UnaryServerInterceptor for streams.
func StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx := incomingRequestID(ss.Context())
		_ = ss.SetHeader(metadata.Pairs(RequestIDHeader, RequestID(ctx)))
		return handler(srv, &idStream{ServerStream: ss, ctx: ctx})
	}
}

type idStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *idStream) Context() context.Context { return s.ctx }
