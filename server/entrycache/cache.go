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
	rev      int64
	changed  chan struct{} // closed and replaced on every change
	// memo holds Authorized answers at the current revision; cleared on
	// every change.
	memo map[string]map[string]registration.Entry
	gen  uint64 // bumped on every change
}

// New returns an empty cache. Entries whose parent is serverID are node
// entries: they match agents by selector and alias them.
func New(serverID spiffeid.ID) *Cache {
	return &Cache{
		serverID: serverID,
		byID:     make(map[string]*registration.Entry),
		byParent: make(map[spiffeid.ID]map[string]*registration.Entry),
		changed:  make(chan struct{}),
	}
}

// Reset replaces the whole content, e.g. after a (re)load from the store.
func (c *Cache) Reset(entries []registration.Entry, rev int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byID = make(map[string]*registration.Entry, len(entries))
	c.byParent = make(map[spiffeid.ID]map[string]*registration.Entry)
	for i := range entries {
		c.putLocked(entries[i])
	}
	c.rev = rev
	c.broadcastLocked()
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
	for _, id := range deletedIDs {
		c.deleteLocked(id)
	}
	for _, e := range upserts {
		if old, ok := c.byID[e.ID]; ok && e.Revision < old.Revision {
			continue
		}
		c.deleteLocked(e.ID)
		c.putLocked(e)
	}
	if rev > c.rev {
		c.rev = rev
	}
	c.broadcastLocked()
}

func (c *Cache) putLocked(e registration.Entry) {
	p := &e
	c.byID[e.ID] = p
	m := c.byParent[e.ParentID]
	if m == nil {
		m = make(map[string]*registration.Entry)
		c.byParent[e.ParentID] = m
	}
	m[e.ID] = p
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
}

func (c *Cache) broadcastLocked() {
	c.memo = nil
	c.gen++
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
	var out []registration.Entry
	for _, e := range c.byParent[c.serverID] {
		if set.Includes(e.Selectors) {
			out = append(out, *e)
		}
	}
	return out
}

// Authorized returns the entries an agent may obtain SVIDs for: those
// parented by the agent or by one of its node aliases, and, recursively,
// entries parented by an authorised entry's SPIFFE ID. The revision
// returned is the one the answer is current to. The map is shared with
// other callers until the next change: callers must not modify it.
func (c *Cache) Authorized(agentID spiffeid.ID, agentSelectors []registration.Selector) (map[string]registration.Entry, int64) {
	key := agentID.String() + "\x00" + registration.SelectorsKey(agentSelectors)
	c.mu.RLock()
	if m, ok := c.memo[key]; ok {
		rev := c.rev
		c.mu.RUnlock()
		return m, rev
	}
	m, rev := c.authorizedLocked(agentID, agentSelectors)
	gen := c.gen
	c.mu.RUnlock()
	c.mu.Lock()
	if c.gen == gen {
		if c.memo == nil {
			c.memo = make(map[string]map[string]registration.Entry)
		}
		if len(c.memo) > 4096 {
			clear(c.memo)
		}
		c.memo[key] = m
	}
	c.mu.Unlock()
	return m, rev
}

func (c *Cache) authorizedLocked(agentID spiffeid.ID, agentSelectors []registration.Selector) (map[string]registration.Entry, int64) {
	out := make(map[string]registration.Entry)
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
			out[id] = *e
			if !seen[e.SPIFFEID] {
				seen[e.SPIFFEID] = true
				queue = append(queue, e.SPIFFEID)
			}
		}
	}
	return out, c.rev
}
