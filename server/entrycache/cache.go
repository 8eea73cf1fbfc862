// Package entrycache holds the server's in-memory view of registration
// entries and answers which entries an agent is authorised for. Changes are
// broadcast so node API streams can push them to agents as they happen.
//
// It must not import the datastore backends, the CA or the API packages.
package entrycache

import (
	"sync"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/registration"
)

// Cache is an index of registration entries. The zero value is not usable;
// call New.
type Cache struct {
	serverID spiffeid.ID

	mu       sync.RWMutex // guards the fields that follow
	byID     map[string]*registration.Entry
	byParent map[spiffeid.ID]map[string]*registration.Entry
	// nodeBySel indexes node entries (parented by serverID) by each of
	// their selectors, so that finding an agent's aliases costs its own
	// selectors, not every node entry (one per agent in many fleets);
	// nodeNoSel holds node entries without selectors (they alias every
	// agent).
	nodeBySel map[registration.Selector]map[string]*registration.Entry
	nodeNoSel map[string]*registration.Entry
	rev       int64
	changed   chan struct{} // closed and replaced on every change
	// memo holds View answers at the current revision; cleared on every
	// change.
	memo map[string]View
	gen  uint64 // bumped on every change
	// log records what each recent change touched (see Stale).
	log changeLog
}

// New returns an empty cache. Entries whose parent is serverID are node
// entries: they match agents by selector and alias them.
func New(serverID spiffeid.ID) *Cache {
	return &Cache{
		serverID:  serverID,
		byID:      make(map[string]*registration.Entry),
		byParent:  make(map[spiffeid.ID]map[string]*registration.Entry),
		nodeBySel: make(map[registration.Selector]map[string]*registration.Entry),
		nodeNoSel: make(map[string]*registration.Entry),
		changed:   make(chan struct{}),
	}
}

// Reset replaces the whole content, e.g. after a (re)load from the store.
func (c *Cache) Reset(entries []registration.Entry, rev int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byID = make(map[string]*registration.Entry, len(entries))
	c.byParent = make(map[spiffeid.ID]map[string]*registration.Entry)
	c.nodeBySel = make(map[registration.Selector]map[string]*registration.Entry)
	c.nodeNoSel = make(map[string]*registration.Entry)
	for i := range entries {
		c.putLocked(entries[i])
	}
	c.rev = rev
	c.broadcastLocked(change{all: true})
}

// Apply upserts and deletes entries and records rev as the revision the
// cache is now current to (ignored when lower than the current one). An
// upsert older than the cached version of its entry (lower Revision) is
// ignored: entries can be updated, and a catch-up that read an entry
// before an update must not undo the update applied meanwhile.
func (c *Cache) Apply(upserts []registration.Entry, deletedIDs []string, rev int64) {
	if len(upserts) == 0 && len(deletedIDs) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var ch change
	for _, id := range deletedIDs {
		if old, ok := c.byID[id]; ok {
			ch.touch(old.ParentID, c.serverID)
		}
		c.deleteLocked(id)
	}
	for _, e := range upserts {
		old, ok := c.byID[e.ID]
		if ok && e.Revision < old.Revision {
			continue
		}
		if ok {
			ch.touch(old.ParentID, c.serverID)
		}
		ch.touch(e.ParentID, c.serverID)
		c.deleteLocked(e.ID)
		c.putLocked(e)
	}
	if rev > c.rev {
		c.rev = rev
	}
	c.broadcastLocked(ch)
}

func (c *Cache) putLocked(e registration.Entry) {
	m := c.byParent[e.ParentID]
	if m == nil {
		m = make(map[string]*registration.Entry)
		c.byParent[e.ParentID] = m
	}
	for _, sibling := range m {
		// One copy of a parent ID per parent, not per entry: entries
		// decoded one by one each bring their own (a join-token fleet has
		// twenty or more entries per agent).
		e.ParentID = sibling.ParentID
		break
	}
	p := &e
	c.byID[e.ID] = p
	m[e.ID] = p
	if e.ParentID == c.serverID {
		if len(e.Selectors) == 0 {
			c.nodeNoSel[e.ID] = p
		}
		for _, sel := range e.Selectors {
			n := c.nodeBySel[sel]
			if n == nil {
				n = make(map[string]*registration.Entry)
				c.nodeBySel[sel] = n
			}
			n[e.ID] = p
		}
	}
}

func (c *Cache) deleteLocked(id string) {
	old, ok := c.byID[id]
	if !ok {
		return
	}
	delete(c.byID, id)
	if m := c.byParent[old.ParentID]; m != nil {
		delete(m, id)
		if len(m) == 0 {
			delete(c.byParent, old.ParentID)
		}
	}
	if old.ParentID == c.serverID {
		delete(c.nodeNoSel, id)
		for _, sel := range old.Selectors {
			if n := c.nodeBySel[sel]; n != nil {
				delete(n, id)
				if len(n) == 0 {
					delete(c.nodeBySel, sel)
				}
			}
		}
	}
}

func (c *Cache) broadcastLocked(ch change) {
	c.memo = nil
	c.gen++
	c.log.add(c.gen, ch)
	close(c.changed)
	c.changed = make(chan struct{})
}

// Revision returns the revision the cache is current to.
func (c *Cache) Revision() int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.rev
}

// Changed returns a channel that is closed at the next change.
func (c *Cache) Changed() <-chan struct{} {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.changed
}

// Len returns the number of entries.
func (c *Cache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.byID)
}

// Get returns an entry by ID.
func (c *Cache) Get(id string) (registration.Entry, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.byID[id]
	if !ok {
		return registration.Entry{}, false
	}
	return *e, true
}

// All returns a copy of every entry.
func (c *Cache) All() []registration.Entry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]registration.Entry, 0, len(c.byID))
	for _, e := range c.byID {
		out = append(out, *e)
	}
	return out
}

// Aliases returns the node entries whose selectors are all among the
// agent's selectors.
func (c *Cache) Aliases(agentSelectors []registration.Selector) []registration.Entry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.aliasesLocked(registration.NewSelectorSet(agentSelectors...))
}

func (c *Cache) aliasesLocked(set registration.SelectorSet) []registration.Entry {
	out := make([]registration.Entry, 0, len(c.nodeNoSel))
	for _, e := range c.nodeNoSel {
		out = append(out, *e)
	}
	seen := make(map[string]bool)
	for sel := range set {
		for id, e := range c.nodeBySel[sel] {
			if !seen[id] {
				seen[id] = true
				if set.Includes(e.Selectors) {
					out = append(out, *e)
				}
			}
		}
	}
	return out
}

// Authorized returns the entries an agent may obtain SVIDs for: those
// parented by the agent or by one of its node aliases, and, recursively,
// entries parented by an authorised entry's SPIFFE ID. The revision
// returned is the one the answer is current to. The map and the entries
// it points to are shared with the cache and other callers: callers must
// not modify them (the cache never modifies an entry in place; an update
// replaces it).
func (c *Cache) Authorized(agentID spiffeid.ID, agentSelectors []registration.Selector) (map[string]*registration.Entry, int64) {
	v := c.View(agentID, agentSelectors)
	return v.Entries, v.Revision
}

func (c *Cache) authorizedLocked(agentID spiffeid.ID, agentSelectors []registration.Selector) View {
	out := make(map[string]*registration.Entry)
	seen := map[spiffeid.ID]bool{agentID: true}
	queue := []spiffeid.ID{agentID}
	for _, alias := range c.aliasesLocked(registration.NewSelectorSet(agentSelectors...)) {
		if !seen[alias.SPIFFEID] {
			seen[alias.SPIFFEID] = true
			queue = append(queue, alias.SPIFFEID)
		}
	}
	for len(queue) > 0 {
		parent := queue[0]
		queue = queue[1:]
		if parent == c.serverID {
			continue // node entries are aliases, never workload entries
		}
		for id, e := range c.byParent[parent] {
			if _, dup := out[id]; dup {
				continue
			}
			out[id] = e // shared, not copied: one copy per entry, not per agent
			if !seen[e.SPIFFEID] {
				seen[e.SPIFFEID] = true
				queue = append(queue, e.SPIFFEID)
			}
		}
	}
	return View{Entries: out, Revision: c.rev, gen: c.gen, parents: seen}
}
