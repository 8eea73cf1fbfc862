// Package workloadapi serves the SPIFFE Workload API to local workloads:
// X.509-SVIDs and bundles (the own trust domain's and, per caller, those
// of the trust domains its entries federate with), streamed and re-sent
// on every rotation, entry change or bundle change. Callers are
// identified by kernel credentials and attested by the agent's workload
// attestors; stock go-spiffe clients work unmodified.
//
// It must not import server packages or SDS.
package workloadapi

import (
	"bytes"
	"context"
	"log/slog"
	"sort"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/hallmarkid/hallmark/agent/cache"
	"github.com/hallmarkid/hallmark/agent/workloadattest"
	"github.com/hallmarkid/hallmark/registration"
)

// CallerAttestor identifies callers.
type CallerAttestor interface {
	Caller(ctx context.Context) (workloadattest.Caller, error)
}

// Metrics counts open streams; *telemetry.Metrics satisfies it.
type Metrics interface {
	StreamOpened(kind string) (closed func())
}

// Config configures the handler.
type Config struct {
	Cache    *cache.Cache
	Attestor CallerAttestor
	// Metrics may be nil.
	Metrics Metrics
	// PendingWait bounds how long a caller whose entries have no SVID yet
	// waits before PermissionDenied (default 10s).
	PendingWait time.Duration
	Log         *slog.Logger
}

// Handler implements the Workload API.
type Handler struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	cfg Config
}

// New returns a handler.
func New(cfg Config) *Handler {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.PendingWait == 0 {
		cfg.PendingWait = 10 * time.Second
	}
	return &Handler{cfg: cfg}
}

// ServerOptions are the gRPC server options for the agent's local
// endpoints (Workload API, SDS): static 64 KiB flow-control windows, gRPC's
// default size, kept fixed. A workload sends a few hundred bytes per call;
// the default dynamic window (bandwidth estimation) made the agent send a
// PING with every call's request and read its answer: two frames, a write
// and a read more per call, for windows nothing here needs.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.StaticStreamWindowSize(64 << 10), grpc.StaticConnWindowSize(64 << 10)}
}

// Register registers the handler on s.
func (h *Handler) Register(s grpc.ServiceRegistrar) {
	workload.RegisterSpiffeWorkloadAPIServer(s, h)
}

// CheckSecurityHeader enforces the Workload API's anti-SSRF header.
func CheckSecurityHeader(ctx context.Context) error {
	// ValueFromIncomingContext copies this header's values only, where
	// FromIncomingContext copies them all on every call.
	if v := metadata.ValueFromIncomingContext(ctx, "workload.spiffe.io"); len(v) != 1 || v[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	return nil
}

func (h *Handler) caller(ctx context.Context) (workloadattest.Caller, error) {
	if err := CheckSecurityHeader(ctx); err != nil {
		return workloadattest.Caller{}, err
	}
	c, err := h.cfg.Attestor.Caller(ctx)
	if err != nil {
		h.cfg.Log.Warn("Workload attestation failed", "error", err)
		return workloadattest.Caller{}, status.Errorf(codes.PermissionDenied, "workload attestation failed: %v", err)
	}
	return c, nil
}

// FetchX509SVID streams the caller's X.509-SVIDs.
func (h *Handler) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	ctx := stream.Context()
	if h.cfg.Metrics != nil {
		defer h.cfg.Metrics.StreamOpened("workload_api")()
	}
	c, err := h.caller(ctx)
	if err != nil {
		return err
	}
	var last *workload.X509SVIDResponse
	var pendingSince time.Time
	for {
		changed, _ := h.cfg.Cache.Changed()
		ids, pending := h.cfg.Cache.Match(c.Selectors)
		bundle := h.cfg.Cache.Bundle()
		var timer <-chan time.Time
		switch {
		case len(ids) == 0 && !pending:
			h.cfg.Log.Debug("No identity issued", "pid", c.PID, "uid", c.UID)
			return status.Error(codes.PermissionDenied, "no identity issued")
		case len(ids) == 0 || bundle == nil:
			if pendingSince.IsZero() {
				pendingSince = time.Now()
			}
			left := h.cfg.PendingWait - time.Since(pendingSince)
			if left <= 0 {
				return status.Error(codes.PermissionDenied, "no identity issued yet")
			}
			timer = time.After(left)
		default:
			var federated []*cache.Bundle
			if h.cfg.Cache.HasFederatedBundles() {
				federated = h.cfg.Cache.FederatedFor(identityEntries(ids))
			}
			resp := x509Response(ids, bundle, federated)
			if last == nil || !sameX509(last, resp) {
				if err := stream.Send(resp); err != nil {
					return err
				}
				last = resp
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-timer:
		}
		if err := h.recheck(c, "FetchX509SVID"); err != nil {
			return err
		}
	}
}

// recheck ends a stream whose caller is no longer the process that
// connected as it was then (exec, setuid, setgid, exit): before each push,
// so a helper holding a passed connection gets nothing more.
func (h *Handler) recheck(c workloadattest.Caller, stream string) error {
	if err := c.Verify(); err != nil {
		h.cfg.Log.Warn("Workload API stream ended: caller changed", "stream", stream, "pid", c.PID, "uid", c.UID, "gid", c.GID, "error", err)
		return status.Errorf(codes.PermissionDenied, "workload attestation failed: %v", err)
	}
	return nil
}

// identityEntries returns the entries of ids.
func identityEntries(ids []cache.Identity) []registration.Entry {
	out := make([]registration.Entry, len(ids))
	for i, id := range ids {
		out[i] = id.Entry
	}
	return out
}

// bundleMap returns the bundles keyed by trust domain ID, as the Workload
// API sends them.
func bundleMap(bundles ...*cache.Bundle) map[string][]byte {
	m := make(map[string][]byte, len(bundles))
	for _, b := range bundles {
		if b != nil && len(b.DER) > 0 {
			m[b.TrustDomain.IDString()] = b.DER
		}
	}
	return m
}

func sameBundles(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

// x509Response builds the caller's response: its SVIDs with the own
// bundle, and the bundles of the trust domains the SVIDs' entries federate
// with (only those, as SPIRE does).
func x509Response(ids []cache.Identity, bundle *cache.Bundle, federated []*cache.Bundle) *workload.X509SVIDResponse {
	sort.Slice(ids, func(i, j int) bool {
		if ids[i].Entry.SPIFFEID != ids[j].Entry.SPIFFEID {
			return ids[i].Entry.SPIFFEID.String() < ids[j].Entry.SPIFFEID.String()
		}
		return ids[i].Entry.ID < ids[j].Entry.ID
	})
	resp := &workload.X509SVIDResponse{Svids: make([]*workload.X509SVID, len(ids))}
	for i, id := range ids {
		resp.Svids[i] = &workload.X509SVID{
			SpiffeId:    id.SVID.ID.String(),
			X509Svid:    id.SVID.CertsDER,
			X509SvidKey: id.SVID.KeyDER,
			Bundle:      bundle.DER,
			Hint:        id.Entry.Hint,
		}
	}
	if len(federated) > 0 {
		resp.FederatedBundles = bundleMap(federated...)
	}
	return resp
}

func sameX509(a, b *workload.X509SVIDResponse) bool {
	if len(a.Svids) != len(b.Svids) || !sameBundles(a.FederatedBundles, b.FederatedBundles) {
		return false
	}
	for i := range a.Svids {
		x, y := a.Svids[i], b.Svids[i]
		if x.SpiffeId != y.SpiffeId || x.Hint != y.Hint || !bytes.Equal(x.X509Svid, y.X509Svid) || !bytes.Equal(x.Bundle, y.Bundle) {
			return false
		}
	}
	return true
}

// FetchX509Bundles streams the trust bundles: the own one and those of
// the trust domains the caller's entries federate with, re-sent whenever
// one of them changes.
func (h *Handler) FetchX509Bundles(_ *workload.X509BundlesRequest, stream grpc.ServerStreamingServer[workload.X509BundlesResponse]) error {
	ctx := stream.Context()
	c, err := h.caller(ctx)
	if err != nil {
		return err
	}
	var last map[string][]byte
	for {
		changed, _ := h.cfg.Cache.Changed()
		entries := h.cfg.Cache.MatchEntries(c.Selectors)
		if len(entries) == 0 {
			return status.Error(codes.PermissionDenied, "no identity issued")
		}
		if own := h.cfg.Cache.Bundle(); own != nil {
			bundles := bundleMap(append([]*cache.Bundle{own}, h.cfg.Cache.FederatedFor(entries)...)...)
			if last == nil || !sameBundles(last, bundles) {
				if err := stream.Send(&workload.X509BundlesResponse{Bundles: bundles}); err != nil {
					return err
				}
				last = bundles
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
		if err := h.recheck(c, "FetchX509Bundles"); err != nil {
			return err
		}
	}
}
