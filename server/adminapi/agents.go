package adminapi

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/internal/apiconv"
	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/datastore"
)

// ListAgents lists the agents matching the request's filter.
func (s *Server) ListAgents(ctx context.Context, req *apiv1.ListAgentsRequest) (*apiv1.ListAgentsResponse, error) {
	agents, err := s.filteredAgents(ctx, req.GetFilter())
	if err != nil {
		return nil, err
	}
	resp := &apiv1.ListAgentsResponse{Agents: make([]*apiv1.Agent, 0, len(agents))}
	for _, a := range agents {
		resp.Agents = append(resp.Agents, agentProto(a))
	}
	return resp, nil
}

// CountAgents counts the agents matching the request's filter.
func (s *Server) CountAgents(ctx context.Context, req *apiv1.CountAgentsRequest) (*apiv1.CountAgentsResponse, error) {
	agents, err := s.filteredAgents(ctx, req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &apiv1.CountAgentsResponse{Count: int32(min(len(agents), 1<<31-1))}, nil
}

// GetAgent returns one agent's record.
func (s *Server) GetAgent(ctx context.Context, req *apiv1.GetAgentRequest) (*apiv1.Agent, error) {
	id, err := agentIDArg(req.GetSpiffeId())
	if err != nil {
		return nil, err
	}
	a, err := s.cfg.Store.GetAgent(ctx, id)
	if errors.Is(err, datastore.ErrNotFound) {
		return nil, status.Errorf(codes.NotFound, "agent %q not found", id)
	}
	if err != nil {
		return nil, status.Errorf(codes.Internal, "get agent: %v", err)
	}
	return agentProto(a), nil
}

// EvictAgent deletes an agent's record, banned or not; it must attest
// again. Deleting a banned agent's record lifts the ban.
func (s *Server) EvictAgent(ctx context.Context, req *apiv1.EvictAgentRequest) (*apiv1.EvictAgentResponse, error) {
	id, err := agentIDArg(req.GetSpiffeId())
	if err != nil {
		return nil, err
	}
	a, err := s.cfg.Store.GetAgent(ctx, id)
	if err == nil {
		err = s.cfg.Store.DeleteAgent(ctx, id)
	}
	if errors.Is(err, datastore.ErrNotFound) {
		return nil, status.Errorf(codes.NotFound, "agent %q not found", id)
	}
	if err != nil {
		return nil, status.Errorf(codes.Internal, "evict: %v", err)
	}
	s.agentGone(id)
	s.audit(ctx, map[string]any{"action": "agent_evict", "agent_id": id, "was_banned": a.Banned})
	return &apiv1.EvictAgentResponse{}, nil
}

// BanAgent ends an agent's streams and marks its record banned, so that
// it can neither renew nor attest again until it is evicted.
func (s *Server) BanAgent(ctx context.Context, req *apiv1.BanAgentRequest) (*apiv1.BanAgentResponse, error) {
	id, err := agentIDArg(req.GetSpiffeId())
	if err != nil {
		return nil, err
	}
	err = s.cfg.Store.BanAgent(ctx, id)
	if errors.Is(err, datastore.ErrNotFound) {
		return nil, status.Errorf(codes.NotFound, "agent %q not found", id)
	}
	if err != nil {
		return nil, status.Errorf(codes.Internal, "ban: %v", err)
	}
	s.agentGone(id)
	s.audit(ctx, map[string]any{"action": "agent_ban", "agent_id": id})
	return &apiv1.BanAgentResponse{}, nil
}

// PurgeAgents deletes (or lists, with dry_run) the agents whose SVID
// expired more than expired_for_seconds ago, among those that can
// re-attest and are not banned.
func (s *Server) PurgeAgents(ctx context.Context, req *apiv1.PurgeAgentsRequest) (*apiv1.PurgeAgentsResponse, error) {
	if req.GetExpiredForSeconds() <= 0 {
		return nil, status.Error(codes.InvalidArgument, "expired_for_seconds must be positive")
	}
	expiredFor := time.Duration(min(req.GetExpiredForSeconds(), int64(time.Duration(1<<63-1)/time.Second))) * time.Second
	agents, err := s.cfg.Store.ListAgents(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "list agents: %v", err)
	}
	cutoff := s.cfg.Clock().Add(-expiredFor)
	resp := &apiv1.PurgeAgentsResponse{}
	for _, a := range agents {
		if !purgeable(a, cutoff) {
			continue
		}
		res := &apiv1.PurgedAgent{AgentId: a.ID}
		resp.Agents = append(resp.Agents, res)
		if req.GetDryRun() {
			continue
		}
		if err := s.purge(ctx, a.ID, cutoff); err != nil {
			res.Error = err.Error()
			continue
		}
		res.Deleted = true
		s.agentGone(a.ID)
		s.audit(ctx, map[string]any{"action": "agent_purge", "agent_id": a.ID,
			"expired_at": a.ExpiresAt.UTC().Format(time.RFC3339)})
	}
	if !req.GetDryRun() {
		s.audit(ctx, map[string]any{"action": "agents_purge", "expired_for_seconds": req.GetExpiredForSeconds(),
			"count": len(resp.Agents)})
	}
	return resp, nil
}

// purgeable reports whether a may be purged: it can re-attest, is not
// banned, and its SVID expired before cutoff.
func purgeable(a datastore.Agent, cutoff time.Time) bool {
	return a.CanReattest && !a.Banned && !a.ExpiresAt.IsZero() && a.ExpiresAt.Before(cutoff)
}

// purge deletes one agent after reading it again: an agent that attested
// again since the listing is kept.
func (s *Server) purge(ctx context.Context, id string, cutoff time.Time) error {
	a, err := s.cfg.Store.GetAgent(ctx, id)
	switch {
	case errors.Is(err, datastore.ErrNotFound):
		return errors.New("already deleted")
	case err != nil:
		return err
	case !purgeable(a, cutoff):
		return errors.New("attested again or banned since it was listed")
	}
	if err := s.cfg.Store.DeleteAgent(ctx, id); err != nil {
		if errors.Is(err, datastore.ErrNotFound) {
			return errors.New("already deleted")
		}
		return err
	}
	return nil
}

// agentGone ends the agent's streams on this server (other servers on a
// shared datastore hear of it through its eviction notices).
func (s *Server) agentGone(id string) {
	if s.cfg.Evictor != nil {
		s.cfg.Evictor.AgentEvicted(id)
	}
}

// agentIDArg checks an agent SPIFFE ID argument.
func agentIDArg(raw string) (string, error) {
	if raw == "" {
		return "", status.Error(codes.InvalidArgument, "an agent SPIFFE ID is required")
	}
	id, err := registration.ParseID(raw)
	if err != nil {
		return "", status.Errorf(codes.InvalidArgument, "%v", err)
	}
	return id.String(), nil
}

func agentProto(a datastore.Agent) *apiv1.Agent {
	p := &apiv1.Agent{
		SpiffeId: a.ID, AttestationType: a.AttestationType, Selectors: apiconv.SelectorsToProto(a.Selectors),
		X509SvidSerialNumber: a.SerialNumber, CanReattest: a.CanReattest, Banned: a.Banned,
		CreatedAt: a.CreatedAt.Unix(), UpdatedAt: a.UpdatedAt.Unix(),
	}
	if !a.ExpiresAt.IsZero() {
		p.X509SvidExpiresAt = a.ExpiresAt.Unix()
	}
	return p
}

// filteredAgents returns the agents matching f (all for a nil filter).
func (s *Server) filteredAgents(ctx context.Context, f *apiv1.AgentFilter) ([]datastore.Agent, error) {
	match, err := newAgentMatcher(f)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	agents, err := s.cfg.Store.ListAgents(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "list agents: %v", err)
	}
	out := agents[:0]
	for _, a := range agents {
		if match(a) {
			out = append(out, a)
		}
	}
	return out, nil
}

// newAgentMatcher compiles f.
func newAgentMatcher(f *apiv1.AgentFilter) (func(datastore.Agent) bool, error) {
	if f == nil {
		return func(datastore.Agent) bool { return true }, nil
	}
	var want registration.SelectorSet
	if len(f.GetBySelectors()) > 0 {
		sels, err := apiconv.SelectorsFromProto(f.GetBySelectors())
		if err != nil {
			return nil, err
		}
		want = registration.NewSelectorSet(sels...)
	}
	matchSel, err := selectorMatcher(f.GetSelectorMatch())
	if err != nil {
		return nil, err
	}
	before := time.Unix(f.GetByExpiresBefore(), 0)
	return func(a datastore.Agent) bool {
		switch {
		case f.GetByAttestationType() != "" && a.AttestationType != f.GetByAttestationType():
			return false
		case f.ByBanned != nil && a.Banned != f.GetByBanned():
			return false
		case f.ByCanReattest != nil && a.CanReattest != f.GetByCanReattest():
			return false
		case f.GetByExpiresBefore() != 0 && !a.ExpiresAt.Before(before):
			return false
		case want != nil && !matchSel(registration.NewSelectorSet(a.Selectors...), want):
			return false
		}
		return true
	}, nil
}

// selectorMatcher returns how an agent's selector set (have) must relate
// to the filter's (want).
func selectorMatcher(m apiv1.SelectorMatch) (func(have, want registration.SelectorSet) bool, error) {
	switch m {
	case apiv1.SelectorMatch_SELECTOR_MATCH_SUPERSET:
		return func(have, want registration.SelectorSet) bool { return subset(want, have) }, nil
	case apiv1.SelectorMatch_SELECTOR_MATCH_SUBSET:
		return func(have, want registration.SelectorSet) bool { return subset(have, want) }, nil
	case apiv1.SelectorMatch_SELECTOR_MATCH_EXACT:
		return func(have, want registration.SelectorSet) bool { return subset(have, want) && subset(want, have) }, nil
	case apiv1.SelectorMatch_SELECTOR_MATCH_ANY:
		return func(have, want registration.SelectorSet) bool {
			for k := range want {
				if _, ok := have[k]; ok {
					return true
				}
			}
			return false
		}, nil
	}
	return nil, fmt.Errorf("unknown selector match %d", m)
}

// subset reports whether every selector of a is in b.
func subset(a, b registration.SelectorSet) bool {
	for k := range a {
		if _, ok := b[k]; !ok {
			return false
		}
	}
	return true
}
