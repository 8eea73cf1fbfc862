package ca_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/server/ca"
)

// formatFixture is a state document written by the CA before the rotation
// engine moved to server/authority (four authorities: active, prepared, a
// tainted old one and an old one; one revoked), and a time it is valid at.
const formatFixture = "testdata/ca-state-format1.json"

var formatNow = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// TestStateFormat1Loads checks that a data directory written by earlier
// versions loads with the same authorities and roles.
func TestStateFormat1Loads(t *testing.T) {
	data := readFile(t, formatFixture)
	dir := filepath.Join(t.TempDir(), "ca")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeMode(t, filepath.Join(dir, ca.StateFileName), data, 0o600)
	clk := &fixedClock{now: formatNow}
	c, err := ca.New(ca.Config{TrustDomain: td, Dir: dir, Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"e9c654d490c7db9b": "active", "f8ce8a22475ae5d7": "prepared", "54551d5400e84cf2": "old:tainted", "9ba81f6d20adf840": "old",
	}
	if got := statuses(c); !mapsEqual(got, want) {
		t.Fatalf("statuses = %v, want %v", got, want)
	}
	if n := len(c.Bundle()); n != 4 {
		t.Fatalf("bundle has %d roots, want 4", n)
	}
	if c.BundleSequence() != 8 || len(c.TaintedAuthorities()) != 1 {
		t.Fatalf("bundle sequence %d, %d tainted; want 8 and 1", c.BundleSequence(), len(c.TaintedAuthorities()))
	}
	if _, err := c.RevokeAuthority(t.Context(), "e79fa25d286d337c"); err == nil {
		t.Fatal("revoking the authority the fixture lists as revoked succeeded")
	}
}

// TestStateFormat1RoundTrips checks that adopting a shared state written
// by earlier versions writes it back byte for byte, so servers of both
// versions can share one datastore.
func TestStateFormat1RoundTrips(t *testing.T) {
	data := readFile(t, formatFixture)
	kv := newMemKV()
	kv.Set(ca.SharedStateKey, data)
	dir := filepath.Join(t.TempDir(), "ca")
	clk := &fixedClock{now: formatNow}
	if _, err := ca.New(ca.Config{TrustDomain: td, Dir: dir, Clock: clk.Now, Shared: kv, SharedNotFound: errKVNotFound}); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, ca.StateFileName)); !bytes.Equal(got, data) {
		t.Fatalf("local copy of the adopted state differs from the shared one:\n%s", got)
	}
	if kv.Writes() != 0 {
		t.Fatalf("%d shared writes, want none", kv.Writes())
	}
}
