package entrycache

import (
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/registration"
)

// View is the answer to "which entries is this agent authorised for", with
// what Stale needs to tell whether a later change can alter it. A node API
// stream keeps its agent's View and recomputes it only when Stale says so:
// a change to one agent's entries then costs the other agents' streams a
// map lookup each, not a recomputation.
type View struct {
	// Entries, and the entries it points to, are shared with the cache
	// and other callers: they must not be modified. Pointers, not copies:
	// with a thousand agents connected, each stream's View holds its
	// entries for hours, and a copy of each entry per agent was most of
	// its memory (BenchmarkViewRetained).
	Entries  map[string]*registration.Entry
	Revision int64

	gen uint64
	// parents holds every parent ID an authorised entry may have: the
	// agent, its node aliases and the SPIFFE IDs of its entries.
	parents map[spiffeid.ID]bool
}

// View returns the entries an agent is authorised for (see Authorized).
func (c *Cache) View(agentID spiffeid.ID, agentSelectors []registration.Selector) View {
	key := agentID.String() + "\x00" + registration.SelectorsKey(agentSelectors)
	c.mu.RLock()
	if v, ok := c.memo[key]; ok {
		c.mu.RUnlock()
		return v
	}
	v := c.authorizedLocked(agentID, agentSelectors)
	c.mu.RUnlock()
	c.mu.Lock()
	if c.gen == v.gen {
		if c.memo == nil {
			c.memo = make(map[string]View)
		}
		if len(c.memo) > 1<<16 {
			clear(c.memo)
		}
		c.memo[key] = v
	}
	c.mu.Unlock()
	return v
}

// Stale reports whether a change made since v was computed may alter the
// entries v's agent (with the same selectors) is authorised for. When it
// reports false, v is brought forward to the cache's current revision:
// what it holds is still the whole answer.
func (c *Cache) Stale(v *View) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if v.gen == c.gen {
		return false
	}
	if !c.log.unaffected(v.gen, v.parents) {
		return true
	}
	v.gen, v.Revision = c.gen, c.rev
	return false
}

// change is what one change touched: the parents of the entries it
// added, removed or changed (before and after), or all when it touched
// node entries (which alias agents) or replaced everything.
type change struct {
	all     bool
	parents []spiffeid.ID
}

func (ch *change) touch(parent, serverID spiffeid.ID) {
	switch {
	case ch.all:
	case parent == serverID || len(ch.parents) >= maxParentsPerChange:
		ch.all, ch.parents = true, nil
	default:
		ch.parents = append(ch.parents, parent)
	}
}

// maxParentsPerChange bounds the parents one change remembers: a bulk
// change touching more is recorded as touching everything.
const maxParentsPerChange = 4096

// logLen bounds the changes remembered; a View older than them is stale.
const logLen = 1024

// changeLog is a ring of the last logLen changes.
type changeLog struct {
	recs [logLen]change
	last uint64 // generation of the newest record; 0 when empty
}

func (l *changeLog) add(gen uint64, ch change) {
	l.recs[gen%logLen] = ch
	l.last = gen
}

// unaffected reports whether no change after generation since touched a
// parent in parents (and none touched everything).
func (l *changeLog) unaffected(since uint64, parents map[spiffeid.ID]bool) bool {
	if l.last-since >= logLen {
		return false
	}
	for g := since + 1; g <= l.last; g++ {
		ch := &l.recs[g%logLen]
		if ch.all {
			return false
		}
		for _, p := range ch.parents {
			if parents[p] {
				return false
			}
		}
	}
	return true
}
