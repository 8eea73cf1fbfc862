package unix

import (
	"errors"
	"log/slog"
	"os/user"
	"strconv"
	"sync"
	"time"
)

// User and group names are cached for nameTTL: os/user costs ~10 µs per
// lookup with /etc files and far more with a network NSS backend, and
// Attest is on the Workload API's hot path. A renamed or deleted user keeps
// its old name in selectors for at most this long, and as long again on a
// connection whose attestation agent/workloadattest reuses (ReuseFor).
const (
	nameTTL       = 30 * time.Second
	nameCacheSize = 4096
)

type nameKey struct {
	group bool
	id    uint32
}

type nameEntry struct {
	name    string
	ok      bool // false: the ID has no name
	expires time.Time
}

type nameCache struct {
	mu sync.Mutex
	m  map[nameKey]nameEntry // guarded by mu
}

func (c *nameCache) init() { c.m = make(map[nameKey]nameEntry) }

// lookup returns the name of a user (or group) ID and reports whether it
// has one. Lookup failures other than "unknown ID" are logged and not
// cached; the selector is then omitted, which can only narrow what the
// workload matches.
func (c *nameCache) lookup(group bool, id uint32, log *slog.Logger) (string, bool) {
	k := nameKey{group, id}
	now := time.Now()
	c.mu.Lock()
	e, hit := c.m[k]
	c.mu.Unlock()
	if hit && now.Before(e.expires) {
		return e.name, e.ok
	}

	s := strconv.FormatUint(uint64(id), 10)
	var err error
	e = nameEntry{expires: now.Add(nameTTL)}
	if group {
		var g *user.Group
		if g, err = user.LookupGroupId(s); err == nil {
			e.name, e.ok = g.Name, g.Name != ""
		}
	} else {
		var u *user.User
		if u, err = user.LookupId(s); err == nil {
			e.name, e.ok = u.Username, u.Username != ""
		}
	}
	var unknownUser user.UnknownUserIdError
	var unknownGroup user.UnknownGroupIdError
	if err != nil && !errors.As(err, &unknownUser) && !errors.As(err, &unknownGroup) {
		log.Warn("unix: name lookup failed", "group", group, "id", id, "err", err)
		return "", false
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= nameCacheSize {
		for k, e := range c.m {
			if !now.Before(e.expires) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= nameCacheSize {
			clear(c.m)
		}
	}
	c.m[k] = e
	return e.name, e.ok
}
