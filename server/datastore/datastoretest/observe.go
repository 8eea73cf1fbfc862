package datastoretest

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/datastore"
)

// testOpObserver: a backend that times its operations (every backend
// should) reports each exported operation once per call, by name.
func testOpObserver(t *testing.T, s datastore.Store) {
	o, ok := s.(datastore.OpObserver)
	if !ok {
		t.Fatalf("%T does not time its operations (datastore.OpObserver)", s)
	}
	var mu sync.Mutex
	var got []string
	o.ObserveOps(func(op string, took time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		if took < 0 {
			t.Errorf("%s took %v", op, took)
		}
		got = append(got, op)
	})
	ctx := context.Background()
	now := time.Now()
	e := entry("/observed", "unix:uid:7")
	res, err := s.CreateEntries(ctx, []registration.Entry{e})
	if err != nil || res[0].Err != nil {
		t.Fatalf("CreateEntries: %v %v", err, res)
	}
	id := res[0].Entry.ID
	must := func(err error) {
		t.Helper()
		if err != nil && !errors.Is(err, datastore.ErrNotFound) {
			t.Fatal(err)
		}
	}
	_, err = s.GetEntry(ctx, id)
	must(err)
	_, _, err = s.ListEntries(ctx)
	must(err)
	_, err = s.EntryEventsSince(ctx, 0)
	must(err)
	up := res[0].Entry
	_, err = s.UpdateEntry(ctx, up)
	must(err)
	_, err = s.DeleteEntry(ctx, id)
	must(err)
	a := datastore.Agent{ID: "spiffe://example.org/agent/observed", AttestationType: "test", SerialNumber: "1", ExpiresAt: now.Add(time.Hour)}
	must(s.CreateAgent(ctx, a))
	must(s.UpdateAgent(ctx, a))
	_, err = s.GetAgent(ctx, a.ID)
	must(err)
	_, err = s.ListAgents(ctx)
	must(err)
	must(s.PromoteAgentSerial(ctx, a.ID, "2"))
	must(s.BanAgent(ctx, a.ID))
	must(s.DeleteAgent(ctx, a.ID))
	must(s.CreateJoinToken(ctx, datastore.JoinToken{Token: "observed", ExpiresAt: now.Add(time.Hour)}))
	_, err = s.ConsumeJoinToken(ctx, "observed", now)
	must(err)
	must(s.PruneJoinTokens(ctx, now))
	must(s.PutKV(ctx, "observed", []byte("v")))
	_, err = s.GetKV(ctx, "observed")
	must(err)
	must(s.Ping(ctx))

	mu.Lock()
	defer mu.Unlock()
	for _, op := range []string{"create_entries", "get_entry", "list_entries", "entry_events_since", "update_entry", "delete_entry",
		"create_agent", "update_agent", "get_agent", "list_agents", "promote_agent_serial", "ban_agent", "delete_agent",
		"create_join_token", "consume_join_token", "prune_join_tokens", "put_kv", "get_kv", "ping"} {
		if n := count(got, op); n != 1 {
			t.Errorf("op %s observed %d times, want 1 (all: %v)", op, n, got)
		}
	}
}

func count(ops []string, op string) int {
	n := 0
	for i := slices.Index(ops, op); i >= 0; i = slices.Index(ops, op) {
		n++
		ops = ops[i+1:]
	}
	return n
}
