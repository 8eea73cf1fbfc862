package server

import (
	"context"
	"errors"
	"time"

	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/datastore"
)

// Following the datastore: change notifications from other servers, catching
// up after a gap, and the periodic housekeeping.

func (s *Server) followChanges(ctx context.Context, n datastore.ChangeNotifier) {
	kick := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-kick:
			}
			if err := s.catchUp(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("Catching up with entry changes failed; retrying", "error", err)
				time.Sleep(time.Second)
				select {
				case kick <- struct{}{}:
				default:
				}
			}
		}
	}()
	backoff := time.Second
	for ctx.Err() == nil {
		err := n.WatchEntryChanges(ctx, func(int64) {
			select {
			case kick <- struct{}{}:
			default:
			}
		})
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("Entry change feed stopped; restarting", "error", err)
		time.Sleep(backoff)
		backoff = min(backoff*2, 30*time.Second)
	}
}

// maxEventsByLookup bounds the events applied one lookup at a time; a
// larger gap reloads all entries instead (the cache diffs by revision, so
// agents still receive only what changed).
const maxEventsByLookup = 256

func (s *Server) catchUp(ctx context.Context) error {
	events, err := s.store.EntryEventsSince(ctx, s.cursor)
	if errors.Is(err, datastore.ErrEventsPruned) || (err == nil && len(events) > maxEventsByLookup) {
		entries, rev, err := s.store.ListEntries(ctx)
		if err != nil {
			return err
		}
		s.entries.Reset(entries, rev)
		s.cursor = rev
		return nil
	}
	if err != nil {
		return err
	}
	if len(events) == 0 {
		return nil
	}
	var upserts []registration.Entry
	var deleted []string
	for _, ev := range events {
		if ev.Deleted {
			deleted = append(deleted, ev.EntryID)
			continue
		}
		e, err := s.store.GetEntry(ctx, ev.EntryID)
		if errors.Is(err, datastore.ErrNotFound) {
			deleted = append(deleted, ev.EntryID) // deleted by a later event
			continue
		}
		if err != nil {
			return err
		}
		upserts = append(upserts, e)
	}
	rev := events[len(events)-1].Revision
	s.entries.Apply(upserts, deleted, rev)
	s.cursor = rev
	return nil
}

// housekeeping prunes expired join tokens and renews the server certificate.
func (s *Server) housekeeping(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		changed := s.entries.Changed()
		s.metrics.SetEntries(s.entries.Len())
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-t.C:
			if err := s.store.PruneJoinTokens(ctx, time.Now()); err != nil {
				s.log.Warn("Pruning join tokens failed", "error", err)
			}
		}
	}
}

// agentCountFor is how long hallmark_attested_agents reuses a count, so
// that scrapes cannot hammer the datastore.
const agentCountFor = 10 * time.Second

// attestedAgents returns the number of attested agents, counted at most
// once per agentCountFor (at scrape time); the last count when the
// datastore does not answer.
func (s *Server) attestedAgents() int {
	s.agentCountMu.Lock()
	defer s.agentCountMu.Unlock()
	if time.Since(s.agentCountAt) < agentCountFor {
		return s.agentCount
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	agents, err := s.store.ListAgents(ctx)
	s.agentCountAt = time.Now() // a failure is retried after agentCountFor too
	if err != nil {
		s.log.Warn("Counting agents for the metrics failed", "error", err)
		return s.agentCount
	}
	s.agentCount = len(agents)
	return s.agentCount
}
