package server

import (
	"context"
	"strings"
	"time"

	"github.com/hallmarkid/hallmark/server/ca"
	"github.com/hallmarkid/hallmark/server/datastore"
	"github.com/hallmarkid/hallmark/server/federation"
	"github.com/hallmarkid/hallmark/server/jwtsigner"
)

// Following the state servers share in the datastore's KV: the CA and JWT
// key state, dynamic federation relationships and static bundles. Each is
// also polled (the CA and JWT engines every min(lifetime/50, 30 s), the
// federation fetcher every 10 s); the notification makes a change made on
// another server take effect here at once.

// kvFollowers is a set of the followers of shared KV state.
type kvFollowers uint8

const (
	followCA         kvFollowers = 1 << iota // ca.SharedStateKey
	followJWT                                // jwtsigner.SharedStateKey
	followFedDynamic                         // federation.DynamicKey
	followFedStatic                          // federation.StaticIndexKey, StaticKVPrefix...
	followAll        = followCA | followJWT | followFedDynamic | followFedStatic
)

// kvFollowersOf returns who follows key; "" (any key may have changed)
// is everyone.
func kvFollowersOf(key string) kvFollowers {
	switch {
	case key == "":
		return followAll
	case key == ca.SharedStateKey:
		return followCA
	case key == jwtsigner.SharedStateKey:
		return followJWT
	case key == federation.DynamicKey:
		return followFedDynamic
	case key == federation.StaticIndexKey, strings.HasPrefix(key, federation.StaticKVPrefix):
		return followFedStatic
	}
	return 0
}

// followKV re-reads shared state when the datastore reports a write of it
// (by another server, or by this one: a redundant re-read finds nothing
// new and writes nothing). Re-reads run apart from the feed and coalesce,
// so that a burst of writes costs a re-read or two.
func (s *Server) followKV(ctx context.Context, n datastore.KVNotifier) {
	dynamic := coalesced(ctx, func(ctx context.Context) {
		if err := s.fed.ReloadDynamic(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("Reloading dynamic federation relationships failed", "error", err)
		}
	})
	static := coalesced(ctx, func(ctx context.Context) {
		if err := s.fed.ReloadStatic(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("Reloading static federated bundles failed", "error", err)
		}
	})
	backoff := time.Second
	for ctx.Err() == nil {
		err := n.WatchKV(ctx, func(key string) {
			f := kvFollowersOf(key)
			if f&followCA != 0 {
				s.ca.SyncNow()
			}
			if f&followJWT != 0 {
				s.jwt.SyncNow()
			}
			if f&followFedDynamic != 0 && s.fed != nil {
				dynamic()
			}
			if f&followFedStatic != 0 && s.fed != nil {
				static()
			}
		})
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("Shared state change feed stopped; restarting", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// coalesced starts a goroutine that runs fn after each call of the
// returned function, until ctx is done. The returned function never
// blocks; calls made while fn waits to run count as one, and a call made
// while fn runs makes it run once more afterwards (it may have read too
// early).
func coalesced(ctx context.Context, fn func(context.Context)) (kick func()) {
	ch := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
			}
			if ctx.Err() != nil {
				return
			}
			fn(ctx)
		}
	}()
	return func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
