package server

import (
	"context"
	"errors"
	"time"

	"github.com/hallmarkid/hallmark/server/datastore"
)

// followEvictions ends, at once, the streams of agents evicted by another
// server sharing the datastore (or by this one through another path). After
// each (re)connection of the notification feed, when evictions may have
// been missed, it rechecks every agent streaming from this server.
func (s *Server) followEvictions(ctx context.Context, n datastore.EvictionNotifier) {
	backoff := time.Second
	for ctx.Err() == nil {
		err := n.WatchAgentEvictions(ctx, func(id string) {
			if id != "" {
				s.log.Info("Agent evicted; ending its streams", "agent_id", id)
				s.node.AgentEvicted(id)
				return
			}
			s.recheckStreamingAgents(ctx)
		})
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("Agent eviction feed stopped; restarting", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// recheckStreamingAgents ends the streams of streaming agents that are no
// longer in the datastore, or banned.
func (s *Server) recheckStreamingAgents(ctx context.Context) {
	for _, id := range s.node.StreamingAgentIDs() {
		a, err := s.store.GetAgent(ctx, id)
		switch {
		case errors.Is(err, datastore.ErrNotFound):
			s.log.Info("Agent evicted while the eviction feed was down; ending its streams", "agent_id", id)
			s.node.AgentEvicted(id)
		case err == nil && a.Banned:
			s.log.Info("Agent banned while the eviction feed was down; ending its streams", "agent_id", id)
			s.node.AgentEvicted(id)
		case err != nil:
			s.log.Warn("Rechecking a streaming agent failed", "agent_id", id, "error", err)
			return
		}
	}
}
