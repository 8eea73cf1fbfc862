package cache_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/agent/cache"
	"github.com/hallmarkid/hallmark/registration"
)

func entry(id string, rev int64, sels ...registration.Selector) registration.Entry {
	return registration.Entry{ID: id, Revision: rev, SPIFFEID: spiffeid.RequireFromString("spiffe://example.org/" + id),
		ParentID: spiffeid.RequireFromString("spiffe://example.org/agent/a"), Selectors: sels}
}

var (
	uid1 = registration.Selector{Type: "unix", Value: "uid:1"}
	gid1 = registration.Selector{Type: "unix", Value: "gid:1"}
	uid2 = registration.Selector{Type: "unix", Value: "uid:2"}
)

// setSVIDs stores svids keyed by entry ID, naming each after its entry
// (as the manager does: an SVID for another SPIFFE ID is refused).
func setSVIDs(c *cache.Cache, svids map[string]*cache.SVID) {
	for id, s := range svids {
		if s.ID.IsZero() {
			s.ID = spiffeid.RequireFromString("spiffe://example.org/" + id)
		}
	}
	c.SetSVIDs(svids)
}

func svid(issued time.Time, ttl time.Duration, rev int64) *cache.SVID {
	return &cache.SVID{IssuedAt: issued, ExpiresAt: issued.Add(ttl), EntryRevision: rev}
}

func TestMatchRequiresAllEntrySelectors(t *testing.T) {
	c := cache.New()
	c.UpdateEntries(true, []registration.Entry{
		entry("a", 1, uid1),
		entry("b", 1, uid1, gid1),
		entry("c", 1, uid2),
	}, nil)
	now := time.Now()
	setSVIDs(c, map[string]*cache.SVID{"a": svid(now, time.Hour, 1), "b": svid(now, time.Hour, 1), "c": svid(now, time.Hour, 1)})

	got, pending := c.Match([]registration.Selector{uid1})
	if len(got) != 1 || got[0].Entry.ID != "a" || pending {
		t.Fatalf("uid1 only: got %d identities (pending %v)", len(got), pending)
	}
	got, _ = c.Match([]registration.Selector{uid1, gid1})
	if len(got) != 2 {
		t.Fatalf("uid1+gid1: got %d identities, want 2", len(got))
	}
	// Entry b is listed under both selectors: once only. And the same
	// answers from a caller with more selectors than are scanned (a set).
	many := []registration.Selector{uid1, gid1}
	for i := range 20 {
		many = append(many, registration.Selector{Type: "unix", Value: fmt.Sprintf("supplementary_gid:%d", 100+i)})
	}
	for _, sels := range [][]registration.Selector{{gid1, uid1}, many} {
		got, _ = c.Match(sels)
		ids := map[string]int{}
		for _, g := range got {
			ids[g.Entry.ID]++
		}
		if len(got) != 2 || ids["a"] != 1 || ids["b"] != 1 {
			t.Fatalf("%d selectors: got %v, want a and b once each", len(sels), ids)
		}
		if es := c.MatchEntries(sels); len(es) != 2 {
			t.Fatalf("%d selectors: MatchEntries = %d entries, want 2", len(sels), len(es))
		}
	}
	if es := c.MatchEntries([]registration.Selector{gid1}); len(es) != 0 {
		t.Fatalf("gid1 only: MatchEntries = %v, want none", es)
	}
}

func TestFullSyncDropsEntriesAndSVIDs(t *testing.T) {
	c := cache.New()
	c.UpdateEntries(true, []registration.Entry{entry("a", 1, uid1), entry("b", 1, uid1)}, nil)
	setSVIDs(c, map[string]*cache.SVID{"a": svid(time.Now(), time.Hour, 1)})
	c.UpdateEntries(true, []registration.Entry{entry("b", 1, uid1)}, nil)
	if got, _ := c.Match([]registration.Selector{uid1}); len(got) != 0 {
		t.Fatalf("dropped entry still served: %v", got)
	}
	if e, s := c.Stats(); e != 1 || s != 0 {
		t.Fatalf("entries=%d svids=%d", e, s)
	}
	// A delta delete removes it from the index too.
	c.UpdateEntries(false, nil, []string{"b"})
	if _, pending := c.Match([]registration.Selector{uid1}); pending {
		t.Fatal("deleted entry still pending")
	}
}

func TestDue(t *testing.T) {
	c := cache.New()
	now := time.Now()
	c.UpdateEntries(true, []registration.Entry{entry("fresh", 1, uid1), entry("old", 1, uid1), entry("changed", 2, uid1), entry("missing", 1, uid1)}, nil)
	setSVIDs(c, map[string]*cache.SVID{
		"fresh":   svid(now, time.Hour, 1),
		"old":     svid(now.Add(-31*time.Minute), time.Hour, 1),
		"changed": svid(now, time.Hour, 1),
	})
	due := map[string]bool{}
	for _, e := range c.Due(now) {
		due[e.ID] = true
	}
	if fmt.Sprint(due) != fmt.Sprint(map[string]bool{"changed": true, "missing": true, "old": true}) {
		t.Fatalf("due = %v", due)
	}
	if next := c.NextRotation(); !next.Equal(now.Add(-31 * time.Minute).Add(30 * time.Minute)) {
		t.Fatalf("next rotation %v", next)
	}
}

func TestDropExpired(t *testing.T) {
	c := cache.New()
	now := time.Now()
	c.UpdateEntries(true, []registration.Entry{entry("a", 1, uid1)}, nil)
	setSVIDs(c, map[string]*cache.SVID{"a": svid(now.Add(-2*time.Hour), time.Hour, 1)})
	ch, _ := c.Changed()
	c.DropExpired(now)
	<-ch
	if _, pending := c.Match([]registration.Selector{uid1}); !pending {
		t.Fatal("expired SVID still served")
	}
}

func BenchmarkMatch10k(b *testing.B) {
	c := cache.New()
	var es []registration.Entry
	svids := map[string]*cache.SVID{}
	for i := range 10000 {
		id := fmt.Sprint(i)
		es = append(es, entry(id, 1, registration.Selector{Type: "unix", Value: fmt.Sprintf("uid:%d", i)}))
		svids[id] = svid(time.Now(), time.Hour, 1)
	}
	c.UpdateEntries(true, es, nil)
	setSVIDs(c, svids)
	sels := []registration.Selector{{Type: "unix", Value: "uid:42"}, {Type: "unix", Value: "gid:0"}, {Type: "unix", Value: "user:x"}}
	for b.Loop() {
		c.Match(sels)
	}
}

// An entry updated to another SPIFFE ID must not keep serving the SVID of
// its old ID to the workloads it now matches; a selector-only update keeps
// the SVID until the re-mint (its identity is unchanged).
func TestUpdatedEntryNeverServesTheOldIdentity(t *testing.T) {
	c := cache.New()
	now := time.Now()
	c.UpdateEntries(true, []registration.Entry{entry("a", 1, uid1)}, nil)
	setSVIDs(c, map[string]*cache.SVID{"a": svid(now, time.Hour, 1)})

	moved := entry("a", 2, uid2)
	c.UpdateEntries(false, []registration.Entry{moved}, nil)
	if got, _ := c.Match([]registration.Selector{uid2}); len(got) != 1 || got[0].SVID == nil || got[0].SVID.ID != moved.SPIFFEID {
		t.Fatalf("selector-only update: got %+v, want the entry's SVID kept until re-minted", got)
	}

	renamed := entry("a", 3, uid2)
	renamed.SPIFFEID = spiffeid.RequireFromString("spiffe://example.org/renamed")
	c.UpdateEntries(false, []registration.Entry{renamed}, nil)
	got, pending := c.Match([]registration.Selector{uid2})
	if len(got) != 0 || !pending {
		t.Fatalf("after a rename: got %+v (pending %v), want no identity until the new SVID is minted", got, pending)
	}
	// An SVID minted for the old name (signing raced the update) is refused.
	old := svid(now, time.Hour, 2)
	old.ID = moved.SPIFFEID
	c.SetSVIDs(map[string]*cache.SVID{"a": old})
	if got, _ := c.Match([]registration.Selector{uid2}); len(got) != 0 {
		t.Fatalf("an SVID for the entry's old SPIFFE ID was stored: %+v", got)
	}
	fresh := svid(now, time.Hour, 3)
	fresh.ID = renamed.SPIFFEID
	c.SetSVIDs(map[string]*cache.SVID{"a": fresh})
	if got, _ := c.Match([]registration.Selector{uid2}); len(got) != 1 || got[0].SVID.ID != renamed.SPIFFEID {
		t.Fatalf("the renamed entry's own SVID: %+v", got)
	}
}

// SVIDs signed by a tainted authority are due at once; others are not.
func TestTaintedAuthorityMakesSVIDsDue(t *testing.T) {
	c := cache.New()
	now := time.Now()
	c.UpdateEntries(true, []registration.Entry{entry("old", 1, uid1), entry("new", 1, uid1)}, nil)
	o, n := svid(now, time.Hour, 1), svid(now, time.Hour, 1)
	o.IssuerKeyID, n.IssuerKeyID = "\x01\x02", "\x03\x04"
	setSVIDs(c, map[string]*cache.SVID{"old": o, "new": n})
	if due := c.Due(now); len(due) != 0 {
		t.Fatalf("due before any taint: %v", due)
	}
	if got := c.SetTainted([][]byte{{1, 2}}); got != 1 {
		t.Fatalf("SetTainted reported %d affected SVIDs, want 1", got)
	}
	due := c.Due(now)
	if len(due) != 1 || due[0].ID != "old" {
		t.Fatalf("due after taint: %v, want only the SVID of the tainted authority", due)
	}
	if ks := c.TaintedKeyIDs(); len(ks) != 1 || string(ks[0]) != "\x01\x02" {
		t.Fatalf("TaintedKeyIDs = %x", ks)
	}
	// Re-minted under the active authority: no longer due.
	r := svid(now, time.Hour, 1)
	r.IssuerKeyID = "\x03\x04"
	setSVIDs(c, map[string]*cache.SVID{"old": r})
	if due := c.Due(now); len(due) != 0 {
		t.Fatalf("due after the re-mint: %v", due)
	}
	// The taint lifted (authority revoked and gone from the bundle).
	c.SetTainted(nil)
	if ks := c.TaintedKeyIDs(); len(ks) != 0 {
		t.Fatalf("TaintedKeyIDs after clearing = %x", ks)
	}
}
