package jwtsigner_test

import (
	"context"
	"crypto/rsa"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/server/jwtsigner"
)

// One full cycle on a fake clock: prepare and publish at 1/2, activate at
// 5/6, prune at expiry; a token signed before the rotation validates after
// it with the published bundle until it expires, and tokens never outlive
// their key.
func TestRotationCycle(t *testing.T) {
	clk := newClock()
	start := clk.Now()
	s := rotating(t, filepath.Join(t.TempDir(), "jwt"), clk, nil)
	k1 := s.ActiveKeyID()

	ch := s.Changed()
	clk.Add(keyTTL/2 - time.Second)
	mustRotate(t, s)
	if len(kids(s)) != 1 || fired(ch) {
		t.Fatalf("before 1/2: keys %v, changed %v", kids(s), fired(ch))
	}

	clk.Add(time.Second)
	mustRotate(t, s)
	k2 := s.NextKeyID()
	if k2 == "" || s.ActiveKeyID() != k1 || len(kids(s)) != 2 || !fired(ch) {
		t.Fatalf("at 1/2: active %s next %q keys %v changed %v", s.ActiveKeyID(), k2, kids(s), fired(ch))
	}
	before := sign(t, s, keyTTL/3+time.Minute)
	long := sign(t, s, jwtsigner.MaxTTL)
	if before.KeyID != k1 {
		t.Fatalf("signed with %s before activation, want %s", before.KeyID, k1)
	}
	if want := start.Add(keyTTL); !long.ExpiresAt.Equal(want) {
		t.Fatalf("a 24h token expires at %s, want the key's expiry %s", long.ExpiresAt, want)
	}

	ch = s.Changed()
	clk.Add(keyTTL/3 - time.Second) // 5/6 less a second
	mustRotate(t, s)
	if s.ActiveKeyID() != k1 || fired(ch) {
		t.Fatal("activated before 5/6")
	}
	clk.Add(time.Second)
	mustRotate(t, s)
	if s.ActiveKeyID() != k2 || s.NextKeyID() != "" || len(kids(s)) != 2 || !fired(ch) {
		t.Fatalf("at 5/6: active %s (want %s) next %q keys %v changed %v", s.ActiveKeyID(), k2, s.NextKeyID(), kids(s), fired(ch))
	}
	after := sign(t, s, 0)
	if after.KeyID != k2 {
		t.Fatalf("signed with %s after activation, want %s", after.KeyID, k2)
	}
	for _, tok := range []jwtsigner.JWTSVID{before, long, after} {
		if err := validateAt(tok.Token, s, clk.Now()); err != nil {
			t.Fatalf("token of key %s does not validate after the rotation: %v", tok.KeyID, err)
		}
	}

	ch = s.Changed()
	clk.Add(keyTTL/6 - time.Second)
	mustRotate(t, s)
	if !slices.Contains(kids(s), k1) {
		t.Fatal("old key pruned before it expired")
	}
	clk.Add(time.Second)
	mustRotate(t, s)
	if slices.Contains(kids(s), k1) || !fired(ch) {
		t.Fatalf("old key not pruned at expiry: keys %v", kids(s))
	}
	if err := validateAt(before.Token, s, clk.Now()); err == nil {
		t.Fatal("token of a pruned key still validates")
	}
	// The next cycle is scheduled from the new key's own lifetime.
	clk.Add(keyTTL/2 - keyTTL/3 - keyTTL/6 + keyTTL/2 - time.Second)
	mustRotate(t, s)
	if s.NextKeyID() != "" {
		t.Fatal("prepared the third key early")
	}
	clk.Add(2 * time.Second)
	mustRotate(t, s)
	if s.NextKeyID() == "" {
		t.Fatal("third key not prepared at half of the second key's lifetime")
	}
}

// Keys, roles and schedule survive a restart; the state file replaces the
// single key file and is owner-only.
func TestRotationStatePersists(t *testing.T) {
	clk := newClock()
	dir := filepath.Join(t.TempDir(), "jwt")
	s1 := rotating(t, dir, clk, nil)
	clk.Add(keyTTL / 2)
	mustRotate(t, s1)
	tok := sign(t, s1, 0)

	s2 := rotating(t, dir, clk, nil)
	if s2.ActiveKeyID() != s1.ActiveKeyID() || s2.NextKeyID() != s1.NextKeyID() || !slices.Equal(kids(s1), kids(s2)) {
		t.Fatalf("after restart: active %s next %s, want %s %s", s2.ActiveKeyID(), s2.NextKeyID(), s1.ActiveKeyID(), s1.NextKeyID())
	}
	if err := validateAt(tok.Token, s2, clk.Now()); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, jwtsigner.StateFileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v %v, want mode 0600", err, fi)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("directory holds %d files, want only the state file", len(ents))
	}
	clk.Add(keyTTL / 3)
	mustRotate(t, s2)
	if s2.ActiveKeyID() != s1.NextKeyID() {
		t.Fatal("the restarted signer did not activate the key prepared before the restart")
	}
}

// A server down for longer than a key's lifetime signs nothing with the
// expired key, and replaces it at its first rotation step.
func TestRestartAfterExpiry(t *testing.T) {
	clk := newClock()
	dir := filepath.Join(t.TempDir(), "jwt")
	s1 := rotating(t, dir, clk, nil)
	clk.Add(keyTTL / 2)
	mustRotate(t, s1) // state file layout
	clk.Add(3 * keyTTL)
	s2 := rotating(t, dir, clk, nil)
	_, err := s2.SignJWTSVID(context.Background(), jwtsigner.JWTSVIDParams{ID: spiffeid.RequireFromString("spiffe://example.org/w"), Audience: []string{"a"}})
	if err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("signing with an expired key: %v", err)
	}
	mustRotate(t, s2)
	if ks := kids(s2); len(ks) != 1 || ks[0] == s1.ActiveKeyID() || ks[0] == s1.NextKeyID() {
		t.Fatalf("keys after a long outage %v", ks)
	}
	if tok := sign(t, s2, 0); tok.KeyID != s2.ActiveKeyID() {
		t.Fatal("not signing with the new key")
	}
}

// A key file written by a version without rotation is adopted: counted from
// its modification time but never as more than half-way through its life,
// so tokens in flight keep validating while it is replaced.
func TestSingleKeyFileMigrates(t *testing.T) {
	clk := newClock()
	dir := filepath.Join(t.TempDir(), "jwt")
	old := rotating(t, dir, clk, nil).ActiveKeyID()
	year := clk.Now().Add(-365 * 24 * time.Hour)
	if err := os.Chtimes(filepath.Join(dir, jwtsigner.KeyFileName), year, year); err != nil {
		t.Fatal(err)
	}
	s := rotating(t, dir, clk, nil)
	if s.ActiveKeyID() != old {
		t.Fatal("key file not adopted")
	}
	tok := sign(t, s, keyTTL/3+time.Minute)
	mustRotate(t, s)
	if s.NextKeyID() == "" || s.ActiveKeyID() != old {
		t.Fatal("an old key file should have its successor prepared at once, and stay active")
	}
	if _, err := os.Stat(filepath.Join(dir, jwtsigner.KeyFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("key file still present after the first rotation: %v", err)
	}
	clk.Add(keyTTL / 3)
	mustRotate(t, s)
	if s.ActiveKeyID() == old {
		t.Fatal("successor not activated")
	}
	if err := validateAt(tok.Token, s, clk.Now()); err != nil {
		t.Fatalf("token of the migrated key: %v", err)
	}
	clk.Add(keyTTL / 6)
	mustRotate(t, s)
	if slices.Contains(kids(s), old) {
		t.Fatal("migrated key not pruned at its expiry")
	}
}

// A configuration change of algorithm applies from the next key on.
func TestAlgorithmChangeAtRotation(t *testing.T) {
	clk := newClock()
	dir := filepath.Join(t.TempDir(), "jwt")
	rotating(t, dir, clk, nil)
	s, err := jwtsigner.New(jwtsigner.Config{TrustDomain: td, Dir: dir, KeyTTL: keyTTL, Clock: clk.Now, Algorithm: jwtsigner.RS256})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.JWTAuthorities()[s.ActiveKeyID()].(*rsa.PublicKey); ok {
		t.Fatal("persisted key replaced at start")
	}
	clk.Add(keyTTL / 2)
	mustRotate(t, s)
	if _, ok := s.JWTAuthorities()[s.NextKeyID()].(*rsa.PublicKey); !ok {
		t.Fatal("next key is not RSA")
	}
}
