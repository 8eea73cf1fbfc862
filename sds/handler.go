package sds

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync/atomic"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/hallmarkid/hallmark/agent/workloadattest"
)

// CallerAttestor identifies callers from their kernel credentials.
type CallerAttestor interface {
	Caller(ctx context.Context) (workloadattest.Caller, error)
}

// Handler serves SDS. It is safe for concurrent use; one Handler may be
// registered on several gRPC servers.
type Handler struct {
	cfg     Config
	version atomic.Uint64 // last response version, shared by all streams
	streams atomic.Int64  // open streams
	memo    memo
}

// New returns a Handler. A bad Config is an error, never a degraded
// handler.
func New(cfg Config) (*Handler, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	h := &Handler{cfg: cfg}
	// Versions start at the start-up time so that they keep increasing
	// across agent restarts for a reconnecting Envoy.
	h.version.Store(uint64(time.Now().UnixNano()))
	return h, nil
}

// Register serves SDS on s, the Workload API's server: the
// "workload.spiffe.io: true" security header is required unless
// Config.AllowMissingSecurityHeader.
func (h *Handler) Register(s grpc.ServiceRegistrar) {
	secretv3.RegisterSecretDiscoveryServiceServer(s, &server{h: h, requireHeader: !h.cfg.AllowMissingSecurityHeader})
}

// RegisterExtraSocket serves SDS on s, the server of the extra SDS socket
// (socket_path, such as Istio's /run/secrets/workload-spiffe-uds/socket):
// the security header is not required unless
// Config.ExtraSocketRequireSecurityHeader. s must be its own grpc.Server
// with peercred credentials.
func (h *Handler) RegisterExtraSocket(s grpc.ServiceRegistrar) {
	secretv3.RegisterSecretDiscoveryServiceServer(s, &server{h: h, requireHeader: h.cfg.ExtraSocketRequireSecurityHeader})
}

// Streams returns the number of open StreamSecrets and DeltaSecrets
// streams.
func (h *Handler) Streams() int { return int(h.streams.Load()) }

// server is the Handler as seen through one socket's header policy.
type server struct {
	secretv3.UnimplementedSecretDiscoveryServiceServer
	h             *Handler
	requireHeader bool
}

// errSecurityHeader is the Workload API's answer to a call without the
// header, with a hint for Envoy operators.
var errSecurityHeader = status.Error(codes.InvalidArgument,
	"security header missing from request: send gRPC metadata \"workload.spiffe.io: true\" "+
		"(Envoy: initial_metadata on the SDS grpc_service) or use the agent's sds socket_path")

// caller checks the header policy and attests the caller.
func (s *server) caller(ctx context.Context) (callerInfo, error) {
	if s.requireHeader {
		md, ok := metadata.FromIncomingContext(ctx)
		if v := md.Get("workload.spiffe.io"); !ok || len(v) != 1 || v[0] != "true" {
			return callerInfo{}, errSecurityHeader
		}
	}
	c, err := s.h.cfg.Attestor.Caller(ctx)
	if err != nil {
		s.h.cfg.Log.Warn("SDS workload attestation failed", "error", err)
		return callerInfo{}, status.Errorf(codes.PermissionDenied, "sds: workload attestation failed: %v", err)
	}
	return c, nil
}

// recheck refuses to serve a caller that is no longer the process that
// connected as it was then (exec, setuid, setgid, exit). Streams call it
// before each push and before reading files for the caller.
func (h *Handler) recheck(c callerInfo, stream string) error {
	if err := c.Verify(); err != nil {
		h.cfg.Log.Warn("SDS stream ended: caller changed", "stream", stream, "pid", c.PID, "uid", c.UID, "gid", c.GID, "error", err)
		return status.Errorf(codes.PermissionDenied, "sds: workload attestation failed: %v", err)
	}
	return nil
}

func (h *Handler) nextVersion() string {
	return strconv.FormatUint(h.version.Add(1), 10)
}

func newNonce() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

func checkTypeURL(u string) error {
	if u != "" && u != SecretTypeURL {
		return status.Errorf(codes.InvalidArgument, "sds: type_url %q: this service serves only %s", truncate(u), SecretTypeURL)
	}
	return nil
}

// FetchSecrets answers one request with the secrets named in it (all the
// caller may have when it names none), waiting a bounded time for an SVID
// the agent is still minting.
func (s *server) FetchSecrets(ctx context.Context, req *discoveryv3.DiscoveryRequest) (*discoveryv3.DiscoveryResponse, error) {
	c, err := s.caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkTypeURL(req.GetTypeUrl()); err != nil {
		return nil, err
	}
	h := s.h
	refs, err := h.parseNames(req.GetResourceNames())
	if err != nil {
		return nil, err
	}
	spiffe := h.useSPIFFEValidator(req.GetNode())
	var wait deadline
	for {
		changed, _ := h.cfg.Cache.Changed()
		res, pending, err := h.resolve(c, refs, len(refs) == 0, spiffe, nil)
		if err != nil {
			return nil, err
		}
		if !pending {
			resp := &discoveryv3.DiscoveryResponse{VersionInfo: h.nextVersion(), TypeUrl: SecretTypeURL, Nonce: newNonce()}
			for _, r := range res {
				a, err := h.anySecret(r)
				if err != nil {
					return nil, status.Error(codes.Internal, err.Error())
				}
				resp.Resources = append(resp.Resources, a)
			}
			return resp, nil
		}
		left := wait.left(time.Now(), h.cfg.PendingWait)
		if left <= 0 {
			return nil, status.Error(codes.PermissionDenied, "sds: no identity issued yet")
		}
		t := time.NewTimer(left)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, status.FromContextError(ctx.Err()).Err()
		case <-changed:
		case <-t.C:
		}
		t.Stop()
		if err := h.recheck(c, "FetchSecrets"); err != nil {
			return nil, err
		}
	}
}
