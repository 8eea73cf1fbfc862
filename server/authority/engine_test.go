package authority_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/server/authority"
)

var (
	td = spiffeid.RequireTrustDomainFromString("example.org")
	t0 = time.Date(2031, time.March, 1, 12, 0, 0, 0, time.UTC)
)

// tkey is the key of a toy kind: an ID and a lifetime, nothing to sign
// with. The engine needs no more.
type tkey struct {
	id     string
	nb, na time.Time
}

func (k *tkey) ID() string           { return k.id }
func (k *tkey) NotBefore() time.Time { return k.nb }
func (k *tkey) NotAfter() time.Time  { return k.na }

type tdoc struct {
	authority.EntryHead
	Name  string    `json:"name"`
	From  time.Time `json:"from"`
	Until time.Time `json:"until"`
	authority.EntryTail
}

// toy mints keys of ttl and publishes the IDs of the unexpired ones.
type toy struct{ ttl time.Duration }

func (c toy) Mint(now time.Time) (*tkey, error) {
	b := make([]byte, 8)
	rand.Read(b)
	return &tkey{id: hex.EncodeToString(b), nb: now, na: now.Add(c.ttl)}, nil
}

func (toy) EncodeEntry(k *tkey, h authority.EntryHead, t authority.EntryTail) (tdoc, error) {
	return tdoc{EntryHead: h, Name: k.id, From: k.nb.UTC(), Until: k.na.UTC(), EntryTail: t}, nil
}

func (toy) DecodeEntry(i int, d tdoc) (*tkey, bool, error) {
	if !validID(d.Name) || !d.Until.After(d.From) {
		return nil, false, fmt.Errorf("toy %d: malformed", i)
	}
	return &tkey{id: d.Name, nb: d.From, na: d.Until}, false, nil
}

func (toy) Publish(active, next *authority.Entry[*tkey], old []*authority.Entry[*tkey], now time.Time) ([]string, string) {
	var ids []string
	for _, e := range append([]*authority.Entry[*tkey]{active, next}, old...) {
		if e != nil && !e.Expired(now) {
			ids = append(ids, e.ID())
			if e.Tainted {
				ids = append(ids, "tainted:"+e.ID())
			}
		}
	}
	slices.Sort(ids)
	return ids, strings.Join(ids, ",")
}

func (toy) Describe(*authority.Entry[*tkey]) []any { return nil }

func validID(id string) bool { _, err := hex.DecodeString(id); return len(id) == 16 && err == nil }

var (
	errUnknown = errors.New("no such toy")
	nopLog     = slog.New(slog.DiscardHandler)
)

func spec(layout authority.Layout, dropExpired bool) *authority.Spec {
	return &authority.Spec{
		Prefix: "toy", Noun: "toy", Plural: "toys", IDPhrase: "a toy ID", IDAttr: "id",
		ErrUnknown: errUnknown, ValidID: validID, Layout: layout,
		StateFileName: "toy-state.json", SharedKey: "toy/state",
		MaxStateSize: 64 << 10, MaxEntries: 4, MaxRevoked: 2, DropExpiredActive: dropExpired,
		Messages: authority.Messages{RevokeUntainted: "it is not tainted"},
	}
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type engine = authority.Engine[*tkey, tdoc, []string]

func open(t *testing.T, sp *authority.Spec, dir string, clk *clock, kv authority.KVStore) *engine {
	t.Helper()
	cfg := authority.Config{TrustDomain: td, Dir: dir, Clock: clk.Now, Log: nopLog}
	if kv != nil {
		cfg.Shared, cfg.SharedNotFound = kv, errNotFound
	}
	if err := (authority.Files{Prefix: "toy"}).PrepareDir(dir, true); err != nil {
		t.Fatal(err)
	}
	g, _, err := authority.New(sp, cfg, toy{ttl: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func roles(g *engine) map[string]string {
	out := map[string]string{}
	for _, l := range g.Current().List() {
		s := l.Status
		if l.Tainted {
			s += ":tainted"
		}
		out[l.ID()] = s
	}
	return out
}

func fired(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestLifecycle walks a toy key through prepare, activate, taint and
// revoke, checks what each publishes and refuses, and that a restart keeps
// every role and the revocation.
func TestLifecycle(t *testing.T) {
	for _, layout := range []authority.Layout{authority.LayoutAuthorities, authority.LayoutKeys} {
		t.Run(fmt.Sprint(layout), func(t *testing.T) {
			ctx := context.Background()
			sp, dir, clk := spec(layout, false), filepath.Join(t.TempDir(), "toy"), &clock{now: t0}
			g := open(t, sp, dir, clk, nil)
			first := g.Current().Active()
			ch := g.Changed()
			next, err := g.Prepare(ctx)
			if err != nil || !fired(ch) || g.Current().Next() != next {
				t.Fatalf("Prepare: %v; fired %v", err, fired(ch))
			}
			clk.Add(time.Minute)
			if _, err := g.Activate(ctx, next.ID()); err != nil {
				t.Fatal(err)
			}
			if got := g.Current().Active(); got.ID() != next.ID() || !got.ActivatedAt.Equal(clk.Now()) {
				t.Fatalf("active = %s activated %s", got.ID(), got.ActivatedAt)
			}
			if _, err := g.Revoke(ctx, first.ID()); !errors.Is(err, authority.ErrRefused) || !strings.Contains(err.Error(), "toy: revoke toy "+first.ID()+": refused: it is not tainted") {
				t.Fatalf("revoke untainted: %v", err)
			}
			if _, err := g.Taint(ctx, first.ID()); err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(g.Current().Published(), "tainted:"+first.ID()) {
				t.Fatalf("published %v lacks the taint", g.Current().Published())
			}
			if _, err := g.Revoke(ctx, first.ID()); err != nil {
				t.Fatal(err)
			}
			if _, err := g.Taint(ctx, "0123456789abcdef"); !errors.Is(err, errUnknown) {
				t.Fatalf("taint unknown: %v", err)
			}
			want := map[string]string{next.ID(): "active"}
			if got := roles(g); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("roles = %v, want %v", got, want)
			}
			g2 := open(t, sp, dir, clk, nil)
			if got := roles(g2); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("after restart roles = %v, want %v", got, want)
			}
			if _, err := g2.Revoke(ctx, first.ID()); !errors.Is(err, authority.ErrRefused) || !strings.Contains(err.Error(), "already revoked") {
				t.Fatalf("revoke again after restart: %v", err)
			}
			data, err := os.ReadFile(filepath.Join(dir, sp.StateFileName))
			if err != nil {
				t.Fatal(err)
			}
			entries, revokedID, seq := `"keys"`, `"key_id"`, false
			if layout == authority.LayoutAuthorities {
				entries, revokedID, seq = `"authorities"`, `"id"`, true
			}
			if !bytes.Contains(data, []byte(entries)) || !bytes.Contains(data, []byte(revokedID+": \""+first.ID())) ||
				bytes.Contains(data, []byte(`"bundle_sequence"`)) != seq {
				t.Fatalf("state document does not have layout %s:\n%s", layout, data)
			}
		})
	}
}

// TestExpiredActive checks Spec.DropExpiredActive: an active key that
// expired before its successor took over is pruned at once, or kept as old
// until the next step.
func TestExpiredActive(t *testing.T) {
	for _, drop := range []bool{false, true} {
		t.Run(fmt.Sprint("drop=", drop), func(t *testing.T) {
			clk := &clock{now: t0}
			g := open(t, spec(authority.LayoutKeys, drop), filepath.Join(t.TempDir(), "toy"), clk, nil)
			clk.Add(2 * time.Hour) // down past the active key's expiry
			if err := g.Rotate(context.Background()); err != nil {
				t.Fatal(err)
			}
			want := 2
			if drop {
				want = 1
			}
			if n := len(g.Current().List()); n != want || g.Current().Active().Expired(clk.Now()) {
				t.Fatalf("%d keys, active expired %v; want %d and a fresh active", n, g.Current().Active().Expired(clk.Now()), want)
			}
		})
	}
}
