package nodeapi

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/internal/apiconv"
	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/datastore"
	"github.com/hallmarkid/hallmark/server/entrycache"
)

// MaxBatch bounds one BatchSignX509SVID call.
const MaxBatch = 1000

// MaxHeldEntryIDs bounds the entry IDs a resuming agent may list in its
// SyncRequest; an agent holding more asks for a full snapshot instead.
const MaxHeldEntryIDs = 100000

// Sync pushes the entries authorised for the calling agent, the trust
// bundle, the JWT keys and the federated bundles: a full snapshot first
// (or only what changed since the agent's last stream, when it resumes),
// then deltas whenever an entry, the agent or a bundle changes.
func (s *Server) Sync(req *apiv1.SyncRequest, stream apiv1.Node_SyncServer) error {
	select {
	case <-s.stopping:
		// No snapshot for an agent that comes back to a stopping server.
		return s.endStopping(stream)
	default:
	}
	rec, leaf, err := s.callerRecord(stream.Context())
	if err != nil {
		return err
	}
	if err := checkSyncRequest(req); err != nil {
		return err
	}
	// The stream lives no longer than the SVID it was opened with.
	expired := time.NewTimer(leaf.NotAfter.Sub(s.cfg.Clock()))
	defer expired.Stop()
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	as := &agentStream{kick: make(chan struct{}, 1), stop: cancel}
	s.register(rec.ID, as)
	defer s.unregister(rec.ID, as)

	agentID, _ := spiffeid.FromString(rec.ID)
	first := true
	var bundleCh <-chan struct{}
	jwtCh := s.jwtChanged()
	fedSet, fedCh := s.federated()
	var (
		rev  int64
		view entrycache.View
		// recompute is set when the agent's authorised entries must be
		// worked out again: at the start, when its record changed, and
		// when an entry change may touch them (View.Stale). A change to
		// another agent's entries costs this stream a look-up, not a
		// recomputation: with a thousand agents connected, one entry
		// change is one recomputation, not a thousand.
		recompute = true
	)
	for {
		changed := s.cfg.Entries.Changed()
		if s.cfg.BundleChanged != nil && bundleCh == nil {
			bundleCh = s.cfg.BundleChanged()
		}
		if !recompute && s.cfg.Entries.Stale(&view) {
			recompute = true
		}
		if recompute {
			// What the agent holds is what the last View authorised: each
			// message brings the agent to its View's entries exactly, so
			// the stream keeps no copy of them (with a thousand agents
			// connected, that copy was a map per stream, held for hours).
			held := view.Entries
			view = s.cfg.Entries.View(agentID, rec.Selectors)
			rev = view.Revision
			var resp *apiv1.SyncResponse
			if first {
				resp = s.firstMessage(rec.ID, req, view.Entries, rev)
				resp.Bundle = s.bundleProto()
				resp.JwtBundle = s.jwtBundleProto()
				resp.FederatedBundles = allFederated(fedSet)
				resp.FederatedComplete = true
			} else {
				resp = s.entryChanges(held, view.Entries, rev)
			}
			if first || len(resp.Upserts) > 0 || len(resp.DeletedIds) > 0 {
				if err := stream.Send(resp); err != nil {
					return err
				}
			}
			first, recompute = false, false
		} else {
			rev = view.Revision
		}

		select {
		case <-s.stopping:
			return s.endStopping(stream)
		case <-ctx.Done():
			if stream.Context().Err() == nil {
				return s.endedStream(stream.Context(), rec.ID)
			}
			return nil
		case <-expired.C:
			return status.Error(codes.Unauthenticated, "agent SVID expired; reconnect with a current one")
		case <-changed:
		case <-bundleCh:
			bundleCh = nil
			if err := stream.Send(&apiv1.SyncResponse{Bundle: s.bundleProto(), Revision: rev}); err != nil {
				return err
			}
		case <-jwtCh:
			jwtCh = s.jwtChanged()
			if err := stream.Send(&apiv1.SyncResponse{JwtBundle: s.jwtBundleProto(), Revision: rev}); err != nil {
				return err
			}
		case <-fedCh:
			var now map[string]*apiv1.FederatedBundle
			now, fedCh = s.federated()
			if diff := changedFederated(fedSet, now); len(diff) > 0 {
				if err := stream.Send(&apiv1.SyncResponse{FederatedBundles: diff, Revision: rev}); err != nil {
					return err
				}
			}
			fedSet = now
		case <-as.kick:
			r, err := s.cfg.Agents.GetAgent(ctx, rec.ID)
			switch {
			case errors.Is(err, datastore.ErrNotFound):
				return status.Error(codes.PermissionDenied, "agent evicted")
			case err == nil && r.Banned:
				return bannedError(rec.ID)
			case err == nil:
				rec = r
			}
			recompute = true
		}
	}
}

// endedStream is the status of a stream the server ended (AgentEvicted):
// the agent was evicted or banned.
func (s *Server) endedStream(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if r, err := s.cfg.Agents.GetAgent(ctx, id); err == nil && r.Banned {
		return bannedError(id)
	}
	return status.Error(codes.PermissionDenied, "agent evicted")
}

func checkSyncRequest(req *apiv1.SyncRequest) error {
	switch {
	case req.GetSinceRevision() < 0:
		return status.Error(codes.InvalidArgument, "since_revision must not be negative")
	case len(req.GetHeldEntryIds()) > MaxHeldEntryIDs:
		return status.Errorf(codes.InvalidArgument, "at most %d held entry IDs; send none for a full snapshot", MaxHeldEntryIDs)
	case req.GetSinceRevision() == 0 && len(req.GetHeldEntryIds()) > 0:
		return status.Error(codes.InvalidArgument, "held entry IDs without since_revision")
	}
	return nil
}

// firstMessage is the first message of a stream: a full snapshot, or for
// an agent resuming at a revision the server has reached, the entries new
// to it or changed since, and the held ones no longer authorised. Once
// the agent has applied it, the agent holds authorized.
func (s *Server) firstMessage(agentID string, req *apiv1.SyncRequest, authorized map[string]*registration.Entry, rev int64) *apiv1.SyncResponse {
	since := req.GetSinceRevision()
	if since > rev {
		// The agent saw a revision this server has not (a lagging peer in
		// HA, or a store restored from backup): its entries cannot be
		// trusted to be current here.
		s.cfg.Log.Info("Agent resumes from a revision ahead of the server's; sending a full snapshot",
			"agent_id", agentID, "since_revision", since, "revision", rev)
		since = 0
	}
	if since == 0 {
		resp := &apiv1.SyncResponse{Full: true, Revision: rev, Upserts: make([]*apiv1.Entry, 0, len(authorized))}
		for _, e := range authorized {
			resp.Upserts = append(resp.Upserts, apiconv.EntryToProto(*e))
		}
		return resp
	}
	held := make(map[string]struct{}, len(req.GetHeldEntryIds()))
	for _, id := range req.GetHeldEntryIds() {
		held[id] = struct{}{}
	}
	resp := &apiv1.SyncResponse{Resumed: true, Revision: rev}
	for id, e := range authorized {
		if _, ok := held[id]; !ok || e.Revision > since {
			resp.Upserts = append(resp.Upserts, apiconv.EntryToProto(*e))
		}
	}
	for id := range held {
		if _, ok := authorized[id]; !ok {
			resp.DeletedIds = append(resp.DeletedIds, id)
		}
	}
	slices.Sort(resp.DeletedIds)
	return resp
}

// entryChanges returns the upserts and deletions that bring an agent
// holding held (the entries of its previous View, at their revisions
// then) to authorized.
func (s *Server) entryChanges(held, authorized map[string]*registration.Entry, rev int64) *apiv1.SyncResponse {
	resp := &apiv1.SyncResponse{Revision: rev}
	now := s.cfg.Clock()
	for id, e := range authorized {
		if h, ok := held[id]; ok && h.Revision == e.Revision {
			continue
		}
		// Commit → push to this agent; the entry's creation time stands
		// in for its last change.
		if lag := now.Sub(e.CreatedAt); lag >= 0 && lag < time.Minute {
			s.cfg.Metrics.ObservePropagation(lag)
		}
		resp.Upserts = append(resp.Upserts, apiconv.EntryToProto(*e))
	}
	for id := range held {
		if _, ok := authorized[id]; !ok {
			resp.DeletedIds = append(resp.DeletedIds, id)
		}
	}
	return resp
}

func (s *Server) register(id string, as *agentStream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.streams[id]
	if m == nil {
		m = make(map[*agentStream]struct{})
		s.streams[id] = m
	}
	m[as] = struct{}{}
}

func (s *Server) unregister(id string, as *agentStream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.streams[id], as)
	if len(s.streams[id]) == 0 {
		delete(s.streams, id)
	}
}

// kickAgent tells the agent's streams that its record changed.
func (s *Server) kickAgent(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for as := range s.streams[id] {
		select {
		case as.kick <- struct{}{}:
		default:
		}
	}
}

// AgentEvicted ends the evicted agent's streams at once.
func (s *Server) AgentEvicted(id string) {
	s.records.forget(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	for as := range s.streams[id] {
		as.stop()
	}
}

// EndStreams ends every Sync stream, open or opened later, with
// Unavailable: a stopping server calls it before its graceful stop, which
// would otherwise wait out its timeout for streams that never end by
// themselves. Agents reconnect at once (to another server of an HA pair,
// or to this one restarted) and resume where they were.
//
// Each stream's trailer asks its agent to spread its first reconnect over
// a window sized to the agents connected (StopWindow): whichever server
// takes them next is not hit by all of them at once.
func (s *Server) EndStreams() {
	s.stopOnce.Do(func() {
		s.stopWindow.Store(int64(StopWindow(s.ConnectedAgents())))
		close(s.stopping)
	})
}

// ConnectedAgents returns the number of agents with an open sync stream.
func (s *Server) ConnectedAgents() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams)
}
