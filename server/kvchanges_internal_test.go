package server

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/server/ca"
	"github.com/hallmarkid/hallmark/server/federation"
	"github.com/hallmarkid/hallmark/server/jwtsigner"
)

func TestKVFollowersOf(t *testing.T) {
	for _, tt := range []struct {
		name string
		key  string
		want kvFollowers
	}{
		{"any key (reconnection)", "", followAll},
		{"CA state", ca.SharedStateKey, followCA},
		{"JWT key state", jwtsigner.SharedStateKey, followJWT},
		{"dynamic relationships", federation.DynamicKey, followFedDynamic},
		{"static bundle index", federation.StaticIndexKey, followFedStatic},
		{"a static bundle", federation.StaticKVPrefix + "other.org", followFedStatic},
		{"a relationship's fetched bundle: each server fetches its own", federation.KVPrefix + "other.org", 0},
		{"bundle sequence", federation.SequenceKey, 0},
		{"a key that only starts like the CA's", ca.SharedStateKey + "x", 0},
		{"unknown", "something/else", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := kvFollowersOf(tt.key); got != tt.want {
				t.Errorf("kvFollowersOf(%q) = %04b, want %04b", tt.key, got, tt.want)
			}
		})
	}
}

// TestCoalesced: a burst of kicks while fn waits or runs costs at most two
// runs; a kick during a run is never lost; nothing runs after ctx ends.
func TestCoalesced(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var runs atomic.Int32
	entered, release := make(chan struct{}, 8), make(chan struct{})
	kick := coalesced(ctx, func(context.Context) {
		runs.Add(1)
		entered <- struct{}{}
		<-release
	})
	kick()
	<-entered // running, held
	for range 100 {
		kick() // during the run: one more run afterwards
	}
	release <- struct{}{}
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("a kick made during a run was lost")
	}
	release <- struct{}{}
	select {
	case <-entered:
		t.Fatal("100 kicks during one run made more than one more run")
	case <-time.After(100 * time.Millisecond):
	}
	if got := runs.Load(); got != 2 {
		t.Fatalf("runs = %d, want 2", got)
	}
	cancel()
	time.Sleep(20 * time.Millisecond)
	kick()
	time.Sleep(50 * time.Millisecond)
	if got := runs.Load(); got != 2 {
		t.Fatalf("ran after ctx ended: runs = %d", got)
	}
}
