package nodeapi

import (
	"sync"
	"time"

	"github.com/hallmarkid/hallmark/server/datastore"
)

// DefaultOutageGrace is how long, by default, an agent record last read
// from the datastore stands in for it while the datastore fails.
const DefaultOutageGrace = 10 * time.Minute

// records remembers the last agent record read from the datastore for each
// agent, so that while the datastore is down (PostgreSQL restarting or
// failing over) agents can still get SVIDs signed for a bounded time. It
// is consulted only when a read fails for another reason than "not found":
// an eviction always wins, and nothing is ever cached for an agent the
// datastore has not confirmed.
type records struct {
	grace time.Duration // 0 disables the fallback
	clock func() time.Time

	mu sync.Mutex // guards m
	m  map[string]cachedRecord
}

type cachedRecord struct {
	rec datastore.Agent
	at  time.Time // when the datastore last confirmed it
}

func newRecords(grace time.Duration, clock func() time.Time) *records {
	return &records{grace: grace, clock: clock, m: make(map[string]cachedRecord)}
}

// confirmed records what the datastore just returned.
func (r *records) confirmed(rec datastore.Agent) {
	if r.grace <= 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[rec.ID] = cachedRecord{rec: rec, at: r.clock()}
}

// forget drops an agent (evicted, or gone from the datastore).
func (r *records) forget(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, id)
}

// fallback returns the last confirmed record of id if it was confirmed
// within the grace period, and how old it is.
func (r *records) fallback(id string) (datastore.Agent, time.Duration, bool) {
	if r.grace <= 0 {
		return datastore.Agent{}, 0, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.m[id]
	if !ok {
		return datastore.Agent{}, 0, false
	}
	age := r.clock().Sub(c.at)
	if age > r.grace || age < 0 {
		return datastore.Agent{}, age, false
	}
	return c.rec, age, true
}
