package sds

import (
	"errors"
	"io"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// sotw is one StreamSecrets stream's state.
type sotw struct {
	h      *Handler
	c      callerInfo
	node   *corev3.Node // from the first request
	spiffe bool

	subscribed bool     // a first request arrived
	rawNames   []string // as last requested, to spot changes cheaply
	refs       []ref
	hasFiles   bool

	// sent is what the last response carried, by name; version and nonce
	// identify it. The next response goes out only when what the stream
	// would get now differs from sent, whether the client ACKed or NACKed.
	sent    map[string]*resource
	order   []string
	version string
	nonce   string
	nacked  string // version the client last rejected, for logging
}

// StreamSecrets serves the state-of-the-world protocol.
func (s *server) StreamSecrets(stream grpc.BidiStreamingServer[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]) error {
	ctx := stream.Context()
	c, err := s.caller(ctx)
	if err != nil {
		return err
	}
	h := s.h
	h.streams.Add(1)
	defer h.streams.Add(-1)
	defer h.cfg.Metrics.StreamOpened("sds")()

	reqs, recvErr := recvLoop(stream.Context(), stream.Recv)
	st := &sotw{h: h, c: c}
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
		if st.subscribed {
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

func stopTimer(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}

// recvLoop receives requests on its own goroutine until the stream ends.
// The goroutine exits when the stream's context is done (gRPC cancels it
// when the handler returns), so no goroutine outlives the stream.
func recvLoop[Req any](ctx interface{ Done() <-chan struct{} }, recv func() (*Req, error)) (<-chan *Req, <-chan error) {
	reqs := make(chan *Req)
	errc := make(chan error, 1)
	go func() {
		for {
			r, err := recv()
			if err != nil {
				errc <- err
				return
			}
			select {
			case reqs <- r:
			case <-ctx.Done():
				return
			}
		}
	}()
	return reqs, errc
}

// onRequest applies one request: node on the first, ACK/NACK bookkeeping,
// and a subscription change. Requests answering an older response than
// the last one sent (stale nonce) are ignored: the client will ask again
// after it has seen the newer response.
func (st *sotw) onRequest(req *discoveryv3.DiscoveryRequest) error {
	h := st.h
	if err := checkTypeURL(req.GetTypeUrl()); err != nil {
		return err
	}
	if !st.subscribed {
		st.node = req.GetNode()
		st.spiffe = h.useSPIFFEValidator(st.node)
		h.cfg.Log.Debug("SDS stream opened", "pid", st.c.PID, "uid", st.c.UID, "node_id", st.node.GetId(),
			"names", req.GetResourceNames(), "spiffe_validator", st.spiffe)
	} else if st.nonce != "" {
		switch {
		case req.GetResponseNonce() != st.nonce:
			h.cfg.Log.Debug("SDS request with a stale nonce ignored", "pid", st.c.PID, "nonce", req.GetResponseNonce(),
				"current", st.nonce)
			return nil
		case req.GetErrorDetail() != nil:
			h.cfg.Metrics.SDSNACKed()
			if st.nacked != st.version {
				h.cfg.Log.Warn("Envoy rejected SDS secrets (NACK); keeping the stream, not resending until they change",
					"pid", st.c.PID, "uid", st.c.UID, "node_id", st.node.GetId(), "version", st.version,
					"names", st.order, "error", req.GetErrorDetail().GetMessage())
				st.nacked = st.version
			}
		case req.GetVersionInfo() == st.version:
			h.cfg.Log.Debug("SDS secrets acknowledged", "pid", st.c.PID, "version", st.version)
		}
	}
	names := req.GetResourceNames()
	if !st.subscribed || !sameStrings(st.rawNames, names) {
		refs, err := h.parseNames(names)
		if err != nil {
			return err
		}
		st.refs, st.rawNames = refs, append([]string(nil), names...)
		st.hasFiles = false
		for _, r := range refs {
			st.hasFiles = st.hasFiles || r.isFile()
		}
	}
	st.subscribed = true
	return nil
}

// push sends a response if what the stream would get now differs from
// what it last sent. It reports whether something is still pending.
func (st *sotw) push(stream grpc.BidiStreamingServer[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]) (bool, error) {
	if err := st.h.recheck(st.c, "StreamSecrets"); err != nil {
		return false, err
	}
	res, pending, err := st.h.resolve(st.c, st.refs, len(st.refs) == 0, st.spiffe, st.sent)
	if err != nil || pending {
		return pending, err
	}
	if st.sent != nil && st.same(res) {
		return false, nil
	}
	resp := &discoveryv3.DiscoveryResponse{VersionInfo: st.h.nextVersion(), TypeUrl: SecretTypeURL, Nonce: newNonce()}
	sent := make(map[string]*resource, len(res))
	order := make([]string, 0, len(res))
	for _, r := range res {
		a, err := st.h.anySecret(r)
		if err != nil {
			return false, status.Error(codes.Internal, err.Error())
		}
		resp.Resources = append(resp.Resources, a)
		sent[r.name] = r
		order = append(order, r.name)
	}
	if err := stream.Send(resp); err != nil {
		return false, err
	}
	st.h.cfg.Metrics.SDSPushed()
	st.sent, st.order, st.version, st.nonce = sent, order, resp.VersionInfo, resp.Nonce
	return false, nil
}

func (st *sotw) same(res []*resource) bool {
	if len(res) != len(st.order) {
		return false
	}
	for i, r := range res {
		if st.order[i] != r.name || !r.equal(st.sent[r.name]) {
			return false
		}
	}
	return true
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
