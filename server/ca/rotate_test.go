package ca_test

import (
	"context"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/hallmarkid/hallmark/server/ca"
)

func TestSchedule(t *testing.T) {
	nb := t0
	tests := []struct {
		name         string
		life         time.Duration
		published    time.Duration // after nb
		wantPrepare  time.Duration // after nb
		wantActivate time.Duration // after nb
	}{
		{name: "week, published on time", life: 7 * 24 * time.Hour, published: 84 * time.Hour,
			wantPrepare: 84 * time.Hour, wantActivate: 140 * time.Hour},
		{name: "week, published late: waits 1/12 of the life", life: 7 * 24 * time.Hour, published: 135 * time.Hour,
			wantPrepare: 84 * time.Hour, wantActivate: 149 * time.Hour},
		{name: "week, published after expiry would be", life: 7 * 24 * time.Hour, published: 165 * time.Hour,
			wantPrepare: 84 * time.Hour, wantActivate: 179 * time.Hour},
		{name: "week, published before the prepare time", life: 7 * 24 * time.Hour, published: time.Hour,
			wantPrepare: 84 * time.Hour, wantActivate: 140 * time.Hour},
		{name: "hour", life: time.Hour, published: 30 * time.Minute,
			wantPrepare: 30 * time.Minute, wantActivate: 50 * time.Minute},
		{name: "12 seconds", life: 12 * time.Second, published: 6 * time.Second,
			wantPrepare: 6 * time.Second, wantActivate: 10 * time.Second},
		{name: "12 seconds, published at 9.5s", life: 12 * time.Second, published: 9500 * time.Millisecond,
			wantPrepare: 6 * time.Second, wantActivate: 10500 * time.Millisecond},
		{name: "zero lifetime", life: 0, published: 0, wantPrepare: 0, wantActivate: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prep, act := ca.Schedule(nb, nb.Add(tt.life), nb.Add(tt.published))
			if got := prep.Sub(nb); got != tt.wantPrepare {
				t.Errorf("prepare at +%s, want +%s", got, tt.wantPrepare)
			}
			if got := act.Sub(nb); got != tt.wantActivate {
				t.Errorf("activate at +%s, want +%s", got, tt.wantActivate)
			}
			if act.Before(prep) {
				t.Error("activation before preparation")
			}
		})
	}
}

func skid(c *x509.Certificate) string { return hex.EncodeToString(c.SubjectKeyId) }

func bundleIDs(b []*x509.Certificate) []string {
	out := make([]string, len(b))
	for i, c := range b {
		out[i] = skid(c)
	}
	slices.Sort(out)
	return out
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestRotationCompressed drives a CA with a one-hour TTL through several
// rotations on a fake clock, signing an SVID every minute. Every SVID still
// valid verifies against the bundle of the moment, and each authority is
// in the bundle strictly before the first SVID it signs.
func TestRotationCompressed(t *testing.T) {
	clk := &fixedClock{now: t0}
	dir := filepath.Join(t.TempDir(), "ca")
	c, err := ca.New(ca.Config{TrustDomain: td, Dir: dir, Clock: clk.Now, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	type issued struct {
		chain []*x509.Certificate
		at    int
	}
	var svids []issued
	firstInBundle := map[string]int{}
	firstSigned := map[string]int{}
	signers := map[string]bool{}
	seq := c.BundleSequence()
	prevBundle := bundleIDs(c.Bundle())
	key := ecKey(t, elliptic.P256()).Public()
	const steps = 4 * 60 // four hours, one step a minute
	for step := range steps {
		now := t0.Add(time.Duration(step) * time.Minute)
		clk.Set(now)
		ch := c.BundleChanged()
		if err := c.Rotate(t.Context()); err != nil {
			t.Fatalf("step %d: Rotate: %v", step, err)
		}
		bundle := c.Bundle()
		ids := bundleIDs(bundle)
		changed := !slices.Equal(ids, prevBundle)
		if closed(ch) != changed {
			t.Fatalf("step %d: bundle changed=%v but BundleChanged closed=%v", step, changed, closed(ch))
		}
		if changed {
			if c.BundleSequence() != seq+1 {
				t.Fatalf("step %d: BundleSequence = %d after a change, want %d", step, c.BundleSequence(), seq+1)
			}
			seq++
		} else if c.BundleSequence() != seq {
			t.Fatalf("step %d: BundleSequence moved to %d without a change", step, c.BundleSequence())
		}
		prevBundle = ids
		if len(bundle) > 3 {
			t.Fatalf("step %d: bundle holds %d authorities", step, len(bundle))
		}
		for _, b := range bundle {
			if _, ok := firstInBundle[skid(b)]; !ok {
				firstInBundle[skid(b)] = step
			}
			if !now.Before(b.NotAfter) {
				t.Fatalf("step %d: expired authority %s still in the bundle", step, skid(b))
			}
		}

		chain, err := c.SignX509SVID(t.Context(), ca.X509SVIDParams{ID: wlID, PublicKey: key, TTL: 10 * time.Minute})
		if err != nil {
			t.Fatalf("step %d: sign: %v", step, err)
		}
		issuer := hex.EncodeToString(chain[0].AuthorityKeyId)
		signers[issuer] = true
		if _, ok := firstSigned[issuer]; !ok {
			firstSigned[issuer] = step
		}
		svids = append(svids, issued{chain: chain, at: step})

		// Every SVID still valid verifies against the current bundle.
		src := x509bundle.FromX509Authorities(td, bundle)
		for _, s := range svids {
			if !now.Before(s.chain[0].NotAfter) {
				continue
			}
			if _, _, err := x509svid.Verify(s.chain, src, x509svid.WithTime(now)); err != nil {
				t.Fatalf("step %d: SVID signed at step %d by %s does not verify: %v",
					step, s.at, hex.EncodeToString(s.chain[0].AuthorityKeyId), err)
			}
		}
	}
	if len(signers) < 5 {
		t.Fatalf("only %d authorities signed in %d steps, want at least 5 (4 rotations)", len(signers), steps)
	}
	for id, signedAt := range firstSigned {
		inBundle, ok := firstInBundle[id]
		if !ok {
			t.Fatalf("authority %s signed but was never in the bundle", id)
		}
		if inBundle == 0 && signedAt == 0 {
			continue // the first root, created by New
		}
		if inBundle >= signedAt {
			t.Errorf("authority %s: in the bundle at step %d, first signed at step %d", id, inBundle, signedAt)
		}
	}
}

func TestRestartMidRotation(t *testing.T) {
	clk := &fixedClock{now: t0}
	dir := filepath.Join(t.TempDir(), "ca")
	cfg := ca.Config{TrustDomain: td, Dir: dir, Clock: clk.Now, TTL: time.Hour}
	c1, err := ca.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	first := c1.Certificate()
	clk.Set(t0.Add(31 * time.Minute))
	if err := c1.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(c1.Bundle()) != 2 || !c1.Certificate().Equal(first) {
		t.Fatalf("after prepare: bundle %d, active changed %v", len(c1.Bundle()), !c1.Certificate().Equal(first))
	}
	if m := fileMode(t, filepath.Join(dir, ca.StateFileName)); m != 0o600 {
		t.Errorf("state file mode %#o, want 0600", m)
	}
	for _, name := range []string{ca.KeyFileName, ca.CertFileName} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still present after the state file took over: %v", name, err)
		}
	}
	next := c1.Bundle()[1]

	// Restart while an authority is prepared but not active.
	c2, err := ca.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !c2.Certificate().Equal(first) || !slices.Equal(bundleIDs(c2.Bundle()), bundleIDs(c1.Bundle())) {
		t.Fatal("restart changed the authorities")
	}
	if c2.BundleSequence() != c1.BundleSequence() {
		t.Errorf("BundleSequence %d after restart, want %d", c2.BundleSequence(), c1.BundleSequence())
	}
	// The restarted CA activates the prepared authority on schedule.
	clk.Set(t0.Add(45 * time.Minute))
	if err := c2.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !c2.Certificate().Equal(first) {
		t.Fatal("activated before 5/6 of the lifetime")
	}
	clk.Set(t0.Add(51 * time.Minute))
	if err := c2.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !c2.Certificate().Equal(next) {
		t.Fatal("the prepared authority was not activated after the restart")
	}
	// And a second restart keeps the new active one and the old root.
	c3, err := ca.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !c3.Certificate().Equal(next) || len(c3.Bundle()) != 2 {
		t.Fatalf("second restart: active changed or bundle has %d", len(c3.Bundle()))
	}
	// Once the first root expires, it is pruned.
	clk.Set(first.NotAfter)
	if err := c3.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, b := range c3.Bundle() {
		if b.Equal(first) {
			t.Fatal("expired root still in the bundle")
		}
	}
}

// TestRunRealTime runs the rotation loop on the real clock with a
// five-second TTL: the schedule follows the lifetimes, so it rotates within
// seconds. (With two seconds, the loop's slack before an authority expires
// is a third of a second, which a loaded machine under the race detector
// does not always grant.)
func TestRunRealTime(t *testing.T) {
	c, err := ca.New(ca.Config{TrustDomain: td, Dir: filepath.Join(t.TempDir(), "ca"), TTL: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	defer func() { cancel(); <-done }()

	seen := map[string]bool{skid(c.Certificate()): true}
	changes := 0
	key := ecKey(t, elliptic.P256()).Public()
	deadline := time.After(30 * time.Second)
	for len(seen) < 3 {
		ch := c.BundleChanged()
		select {
		case <-ch:
			changes++
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("only %d authorities activated in 30 s", len(seen))
		}
		now := time.Now()
		chain, err := c.SignX509SVID(t.Context(), ca.X509SVIDParams{ID: wlID, PublicKey: key, TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := x509svid.Verify(chain, x509bundle.FromX509Authorities(td, c.Bundle()), x509svid.WithTime(now)); err != nil {
			t.Fatalf("fresh SVID does not verify against the current bundle: %v", err)
		}
		seen[skid(c.Certificate())] = true
	}
	if changes == 0 {
		t.Error("BundleChanged never fired")
	}
}

func TestStateFileErrors(t *testing.T) {
	clk := &fixedClock{now: t0}
	dir := filepath.Join(t.TempDir(), "ca")
	c, err := ca.New(ca.Config{TrustDomain: td, Dir: dir, Clock: clk.Now, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	clk.Set(t0.Add(40 * time.Minute))
	if err := c.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	good := readFile(t, filepath.Join(dir, ca.StateFileName))
	tests := []struct {
		name    string
		data    []byte
		mode    os.FileMode
		wantErr string
	}{
		{name: "mode 0644", data: good, mode: 0o644, wantErr: "has mode 0644"},
		{name: "garbage", data: []byte("{"), wantErr: "malformed state"},
		{name: "other trust domain", data: []byte(strings.Replace(string(good), `"example.org"`, `"other.org"`, 1)), wantErr: `state is for trust domain "other.org"`},
		{name: "unknown format", data: []byte(strings.Replace(string(good), `"format": 1`, `"format": 9`, 1)), wantErr: "format 9 is not supported"},
		{name: "two active", data: []byte(strings.Replace(string(good), `"status": "next"`, `"status": "active"`, 1)), wantErr: "2 active authorities"},
		{name: "no active", data: []byte(strings.Replace(string(good), `"status": "active"`, `"status": "old"`, 1)), wantErr: "0 active authorities"},
		{name: "unknown status", data: []byte(strings.Replace(string(good), `"status": "next"`, `"status": "spare"`, 1)), wantErr: `unknown status "spare"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := filepath.Join(t.TempDir(), "ca")
			if err := os.Mkdir(d, 0o700); err != nil {
				t.Fatal(err)
			}
			mode := tt.mode
			if mode == 0 {
				mode = 0o600
			}
			writeMode(t, filepath.Join(d, ca.StateFileName), tt.data, mode)
			_, err := ca.New(ca.Config{TrustDomain: td, Dir: d, Clock: clk.Now})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New() error = %v, want %q", err, tt.wantErr)
			}
			if got := readFile(t, filepath.Join(d, ca.StateFileName)); string(got) != string(tt.data) {
				t.Error("state file was modified")
			}
		})
	}
}

// FuzzDecodeState: the state document comes from a shared database; its
// parser never panics.
func FuzzDecodeState(f *testing.F) {
	clk := &fixedClock{now: t0}
	dir := filepath.Join(f.TempDir(), "ca")
	c, err := ca.New(ca.Config{TrustDomain: td, Dir: dir, Clock: clk.Now, TTL: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	clk.Set(t0.Add(40 * time.Minute))
	if err := c.Rotate(context.Background()); err != nil {
		f.Fatal(err)
	}
	good, err := os.ReadFile(filepath.Join(dir, ca.StateFileName))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	// A state with a tainted old authority and a revoked one.
	first := c.Authorities()[0].ID
	clk.Set(t0.Add(55 * time.Minute))
	if err := c.Rotate(context.Background()); err != nil {
		f.Fatal(err)
	}
	if _, err := c.TaintAuthority(context.Background(), first); err != nil {
		f.Fatal(err)
	}
	if _, err := c.PrepareAuthority(context.Background()); err != nil {
		f.Fatal(err)
	}
	tainted, err := os.ReadFile(filepath.Join(dir, ca.StateFileName))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tainted)
	if _, err := c.RevokeAuthority(context.Background(), first); err != nil {
		f.Fatal(err)
	}
	revoked, err := os.ReadFile(filepath.Join(dir, ca.StateFileName))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(revoked)
	f.Add([]byte(`{"format":1,"trust_domain":"example.org","authorities":[]}`))
	f.Add([]byte(`{"format":1,"trust_domain":"example.org","authorities":[{"status":"active","key":"","cert":""}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = ca.DecodeState(data, td)
	})
}
