package sds

import (
	"errors"
	"io"
	"sort"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// wildcardName is the incremental protocol's explicit wildcard.
const wildcardName = "*"

// delta is one DeltaSecrets stream's state.
type delta struct {
	h      *Handler
	c      callerInfo
	node   *corev3.Node
	spiffe bool

	started  bool
	wildcard bool
	refs     map[string]ref // explicit subscriptions
	hasFiles bool

	// known maps each resource name the client holds to its version: what
	// it declared in initial_resource_versions, then what was sent.
	// Resources are sent when their current version differs, so an ACK or a
	// NACK never causes a resend of the same content.
	known map[string]string
	last  map[string]*resource // last sent, for files unreadable mid-stream
	nonce string
}

// DeltaSecrets serves the incremental protocol. Subscriptions change by
// delta and are applied from every request, whatever its nonce; a nonce
// only says which response an ACK or NACK is about.
func (s *server) DeltaSecrets(stream grpc.BidiStreamingServer[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse]) error {
	ctx := stream.Context()
	c, err := s.caller(ctx)
	if err != nil {
		return err
	}
	h := s.h
	h.streams.Add(1)
	defer h.streams.Add(-1)
	defer h.cfg.Metrics.StreamOpened("sds")()

	reqs, recvErr := recvLoop(ctx, stream.Recv)
	st := &delta{h: h, c: c, refs: map[string]ref{}, known: map[string]string{}, last: map[string]*resource{}}
	var wait deadline
	var poll *time.Ticker
	var pollC <-chan time.Time
	defer func() {
		if poll != nil {
			poll.Stop()
		}
	}()
	for {
		changed, _ := h.cfg.Cache.Changed()
		var timer *time.Timer
		var timerC <-chan time.Time
		if st.started && (st.wildcard || len(st.refs) > 0) {
			pending, err := st.push(stream)
			if err != nil {
				return err
			}
			if pending {
				left := wait.left(time.Now(), h.cfg.PendingWait)
				if left <= 0 {
					return status.Error(codes.PermissionDenied, "sds: no identity issued yet")
				}
				timer = time.NewTimer(left)
				timerC = timer.C
			} else {
				wait.stop()
			}
			if st.hasFiles && poll == nil {
				poll = time.NewTicker(h.cfg.FilePollInterval)
				pollC = poll.C
			}
		}
		select {
		case <-ctx.Done():
			stopTimer(timer)
			return nil
		case err := <-recvErr:
			stopTimer(timer)
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return err
		case req := <-reqs:
			stopTimer(timer)
			if err := st.onRequest(req); err != nil {
				return err
			}
		case <-changed:
			stopTimer(timer)
		case <-timerC:
		case <-pollC:
			stopTimer(timer)
		}
	}
}

func (st *delta) onRequest(req *discoveryv3.DeltaDiscoveryRequest) error {
	h := st.h
	if err := checkTypeURL(req.GetTypeUrl()); err != nil {
		return err
	}
	first := !st.started
	if first {
		st.started = true
		st.node = req.GetNode()
		st.spiffe = h.useSPIFFEValidator(st.node)
		// A first request that subscribes to nothing is a wildcard
		// subscription (the legacy form of "*").
		st.wildcard = len(req.GetResourceNamesSubscribe()) == 0
		h.cfg.Log.Debug("SDS delta stream opened", "pid", st.c.PID, "uid", st.c.UID, "node_id", st.node.GetId(),
			"subscribe", req.GetResourceNamesSubscribe(), "spiffe_validator", st.spiffe)
	} else if n := req.GetResponseNonce(); n != "" {
		switch {
		case n != st.nonce:
			h.cfg.Log.Debug("SDS delta request with a stale nonce: subscription changes applied, ACK/NACK ignored",
				"pid", st.c.PID, "nonce", n, "current", st.nonce)
		case req.GetErrorDetail() != nil:
			h.cfg.Metrics.SDSNACKed()
			h.cfg.Log.Warn("Envoy rejected SDS secrets (NACK); keeping the stream, not resending until they change",
				"pid", st.c.PID, "uid", st.c.UID, "node_id", st.node.GetId(), "nonce", n,
				"error", req.GetErrorDetail().GetMessage())
		default:
			h.cfg.Log.Debug("SDS delta response acknowledged", "pid", st.c.PID, "nonce", n)
		}
	}
	for _, name := range req.GetResourceNamesUnsubscribe() {
		if name == wildcardName {
			st.wildcard = false
			continue
		}
		delete(st.refs, name)
		delete(st.known, name)
		delete(st.last, name)
	}
	for _, name := range req.GetResourceNamesSubscribe() {
		if name == wildcardName {
			st.wildcard = true
			continue
		}
		if _, ok := st.refs[name]; !ok && len(st.refs) == maxNames {
			return status.Errorf(codes.InvalidArgument, "sds: more than %d resource names", maxNames)
		}
		r, err := h.parseName(name)
		if err != nil {
			return err
		}
		st.refs[name] = r
		if !first {
			// A (re)subscription asks for the resource: send it even if
			// the client had it.
			delete(st.known, name)
		}
	}
	if first {
		for name, v := range req.GetInitialResourceVersions() {
			if _, ok := st.refs[name]; ok || st.wildcard {
				st.known[name] = v
			}
		}
	}
	st.hasFiles = false
	for _, r := range st.refs {
		st.hasFiles = st.hasFiles || r.isFile()
	}
	return nil
}

// push sends what changed since the client's known versions, and the
// names that left a wildcard subscription as removed. It reports whether
// something is still pending.
func (st *delta) push(stream grpc.BidiStreamingServer[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse]) (bool, error) {
	if err := st.h.recheck(st.c, "DeltaSecrets"); err != nil {
		return false, err
	}
	names := make([]string, 0, len(st.refs))
	for n := range st.refs {
		names = append(names, n)
	}
	sort.Strings(names)
	refs := make([]ref, len(names))
	for i, n := range names {
		refs[i] = st.refs[n]
	}
	res, pending, err := st.h.resolve(st.c, refs, st.wildcard, st.spiffe, st.last)
	if err != nil || pending {
		return pending, err
	}
	resp := &discoveryv3.DeltaDiscoveryResponse{TypeUrl: SecretTypeURL}
	current := make(map[string]bool, len(res))
	versions := make(map[string]string)
	for _, r := range res {
		if current[r.name] {
			continue // named explicitly and by the wildcard
		}
		current[r.name] = true
		v := r.version()
		if st.known[r.name] == v {
			continue
		}
		a, err := st.h.anySecret(r)
		if err != nil {
			return false, status.Error(codes.Internal, err.Error())
		}
		resp.Resources = append(resp.Resources, &discoveryv3.Resource{Name: r.name, Version: v, Resource: a})
		versions[r.name] = v
		st.last[r.name] = r
	}
	for name := range st.known {
		if !current[name] {
			resp.RemovedResources = append(resp.RemovedResources, name)
		}
	}
	if len(resp.Resources) == 0 && len(resp.RemovedResources) == 0 {
		return false, nil
	}
	sort.Strings(resp.RemovedResources)
	resp.SystemVersionInfo = st.h.nextVersion()
	resp.Nonce = newNonce()
	if err := stream.Send(resp); err != nil {
		return false, err
	}
	st.h.cfg.Metrics.SDSPushed()
	for _, name := range resp.RemovedResources {
		delete(st.known, name)
		delete(st.last, name)
	}
	for name, v := range versions {
		st.known[name] = v
	}
	st.nonce = resp.Nonce
	return false, nil
}
