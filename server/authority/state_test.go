package authority_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/server/authority"
	"github.com/hallmarkid/hallmark/server/authority/authoritytest"
)

var errNotFound = errors.New("kv: not found")

// TestSharedRoundTrip checks, for both layouts, that a server joining a
// shared state adopts it and writes it back byte for byte, and that an
// operator action on one server is what the other adopts.
func TestSharedRoundTrip(t *testing.T) {
	for _, layout := range []authority.Layout{authority.LayoutAuthorities, authority.LayoutKeys} {
		t.Run(fmt.Sprint(layout), func(t *testing.T) {
			sp, store, clk := spec(layout, false), authoritytest.NewMemKV(errNotFound), &clock{now: t0}
			a := open(t, sp, filepath.Join(t.TempDir(), "a"), clk, store)
			if _, err := a.Prepare(context.Background()); err != nil {
				t.Fatal(err)
			}
			dirB := filepath.Join(t.TempDir(), "b")
			b := open(t, sp, dirB, clk, store)
			if fmt.Sprint(roles(a)) != fmt.Sprint(roles(b)) {
				t.Fatalf("roles differ: %v vs %v", roles(a), roles(b))
			}
			local, err := os.ReadFile(filepath.Join(dirB, sp.StateFileName))
			if err != nil {
				t.Fatal(err)
			}
			if shared, _ := store.GetKV(context.Background(), sp.SharedKey); !bytes.Equal(local, shared) {
				t.Fatalf("adopted state differs from the shared one:\n%s\n%s", local, shared)
			}
		})
	}
}

func validDoc(t testing.TB) string {
	t.Helper()
	clk := &clock{now: t0}
	dir := filepath.Join(t.TempDir(), "toy")
	sp := spec(authority.LayoutKeys, false)
	cfg := authority.Config{TrustDomain: td, Dir: dir, Clock: clk.Now, Log: nopLog}
	if err := (authority.Files{Prefix: "toy"}).PrepareDir(dir, true); err != nil {
		t.Fatal(err)
	}
	g, _, err := authority.New(sp, cfg, toy{ttl: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	p, err := g.Prepare(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Activate(context.Background(), p.ID()); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, sp.StateFileName))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestDecodeRefuses feeds broken state documents to the decoder: each is
// refused with an error naming the defect in the kind's words.
func TestDecodeRefuses(t *testing.T) {
	good := validDoc(t)
	sp := spec(authority.LayoutKeys, false)
	if n, err := authority.DecodeState(sp, toy{}, td, []byte(good)); err != nil || n != 2 {
		t.Fatalf("valid document: %d entries, %v", n, err)
	}
	revoked := `"revoked": [{"key_id": "0123456789abcdef", "not_after": "2031-03-01T00:00:00Z"}, {"key_id": "0123456789abcdef", "not_after": "2031-03-01T00:00:00Z"}]`
	tests := []struct {
		name, doc, wantErr string
	}{
		{name: "garbage", doc: "{", wantErr: "malformed state"},
		{name: "entries not a list", doc: `{"format":1,"trust_domain":"example.org","keys":{}}`, wantErr: "malformed state"},
		{name: "too large", doc: strings.Repeat(" ", 65<<10), wantErr: "more than 65536"},
		{name: "format", doc: strings.Replace(good, `"format": 1`, `"format": 2`, 1), wantErr: "state format 2 is not supported"},
		{name: "trust domain", doc: strings.Replace(good, `"example.org"`, `"other.org"`, 1), wantErr: `state is for trust domain "other.org"`},
		{name: "no entries", doc: `{"format":1,"trust_domain":"example.org","keys":[]}`, wantErr: "state holds 0 toys, want 1 to 4"},
		{name: "other layout", doc: strings.Replace(good, `"keys"`, `"authorities"`, 1), wantErr: "state holds 0 toys"},
		{name: "two active", doc: strings.Replace(good, `"status": "old"`, `"status": "active"`, 1), wantErr: "state has 2 active toys, want 1"},
		{name: "unknown status", doc: strings.Replace(good, `"status": "old"`, `"status": "spare"`, 1), wantErr: `toy 1: unknown status "spare"`},
		{name: "tainted active", doc: strings.Replace(good, `"status": "active",`, `"status": "active", "tainted": true,`, 1), wantErr: "only old toys can be"},
		{name: "bad entry", doc: strings.Replace(good, `"name": "`, `"name": "x`, 1), wantErr: "toy 0: malformed"},
		{name: "revoked twice", doc: strings.Replace(good, "\n}", ",\n"+revoked+"\n}", 1), wantErr: "appears twice"},
		{name: "revoked malformed", doc: strings.Replace(good, "\n}", `, "revoked": [{"key_id": "x", "not_after": "2031-03-01T00:00:00Z"}]`+"\n}", 1), wantErr: `malformed toy ID "x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := authority.DecodeState(sp, toy{}, td, []byte(tt.doc)); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// FuzzDecodeState feeds arbitrary documents to the decoder of both
// layouts: it must not panic, and what it accepts is within bounds.
func FuzzDecodeState(f *testing.F) {
	good := validDoc(f)
	f.Add([]byte(good))
	f.Add([]byte(strings.Replace(good, `"keys"`, `"authorities"`, 1)))
	f.Add([]byte(`{"format":1,"trust_domain":"example.org","keys":[{"status":"active"}],"revoked":[{"id":1}]}`))
	f.Add([]byte("null"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, layout := range []authority.Layout{authority.LayoutAuthorities, authority.LayoutKeys} {
			n, err := authority.DecodeState(spec(layout, false), toy{}, td, data)
			if err == nil && (n < 1 || n > 4) {
				t.Fatalf("accepted a state of %d entries", n)
			}
		}
	})
}
