package datastoretest

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/datastore"
)

// base is a fixed, second-precision instant for caller-supplied times.
var base = time.Date(2031, 4, 5, 6, 7, 8, 0, time.UTC)

func agent(name string) datastore.Agent {
	return datastore.Agent{
		ID:              "spiffe://example.org/hallmark/agent/tpm/" + name,
		AttestationType: "tpm",
		Selectors: []registration.Selector{
			{Type: "tpm", Value: "ek-hash:" + name},
			{Type: "tpm", Value: "pcr:7:abcd"},
		},
		SerialNumber: "1001",
		ExpiresAt:    base,
		CanReattest:  true,
	}
}

func testAgents(t *testing.T, s datastore.Store) {
	c := ctx(t)
	a := agent("a")
	before := time.Now()
	if err := s.CreateAgent(c, a); err != nil {
		t.Fatalf("CreateAgent: %v", err)
	}
	after := time.Now()
	got, err := s.GetAgent(c, a.ID)
	if err != nil {
		t.Fatalf("GetAgent: %v", err)
	}
	checkCreatedAt(t, "CreatedAt", got.CreatedAt, before, after)
	checkCreatedAt(t, "UpdatedAt", got.UpdatedAt, before, after)
	want := a
	want.CreatedAt, want.UpdatedAt = got.CreatedAt, got.UpdatedAt
	if d := diffAgent(got, want); d != "" {
		t.Errorf("GetAgent: %s", d)
	}

	other := agent("a")
	other.SerialNumber = "666"
	if err := s.CreateAgent(c, other); !errors.Is(err, datastore.ErrAlreadyExists) {
		t.Errorf("second CreateAgent: err = %v, want ErrAlreadyExists", err)
	}
	if again, err := s.GetAgent(c, a.ID); err != nil || again.SerialNumber != a.SerialNumber {
		t.Errorf("after a refused CreateAgent: serial %q (err %v), want %q", again.SerialNumber, err, a.SerialNumber)
	}

	upd := a
	upd.SerialNumber = "1002"
	upd.NewSerialNumber = "1003" // a renewal the agent has not used yet
	upd.ExpiresAt = base.Add(time.Hour)
	upd.CanReattest = false
	upd.Selectors = []registration.Selector{{Type: "tpm", Value: "ek-hash:a"}}
	upd.AttestationType = "tpm-v2"
	if err := s.UpdateAgent(c, upd); err != nil {
		t.Fatalf("UpdateAgent: %v", err)
	}
	got2, err := s.GetAgent(c, a.ID)
	if err != nil {
		t.Fatalf("GetAgent: %v", err)
	}
	want = upd
	want.CreatedAt, want.UpdatedAt = got.CreatedAt, got2.UpdatedAt
	if d := diffAgent(got2, want); d != "" {
		t.Errorf("GetAgent after update: %s (CreatedAt must be kept)", d)
	}
	if got2.UpdatedAt.Before(got.UpdatedAt) {
		t.Errorf("UpdatedAt went back from %v to %v", got.UpdatedAt, got2.UpdatedAt)
	}

	b := agent("b")
	if err := s.CreateAgent(c, b); err != nil {
		t.Fatalf("CreateAgent: %v", err)
	}
	list, err := s.ListAgents(c)
	if err != nil {
		t.Fatalf("ListAgents: %v", err)
	}
	ids := map[string]bool{}
	for _, l := range list {
		ids[l.ID] = true
	}
	if len(list) != 2 || !ids[a.ID] || !ids[b.ID] {
		t.Errorf("ListAgents = %v, want %s and %s", list, a.ID, b.ID)
	}

	if err := s.DeleteAgent(c, a.ID); err != nil {
		t.Fatalf("DeleteAgent: %v", err)
	}
	if _, err := s.GetAgent(c, a.ID); !errors.Is(err, datastore.ErrNotFound) {
		t.Errorf("GetAgent after delete: err = %v, want ErrNotFound", err)
	}
	if err := s.DeleteAgent(c, a.ID); !errors.Is(err, datastore.ErrNotFound) {
		t.Errorf("second DeleteAgent: err = %v, want ErrNotFound", err)
	}
	if err := s.UpdateAgent(c, a); !errors.Is(err, datastore.ErrNotFound) {
		t.Errorf("UpdateAgent of a deleted agent: err = %v, want ErrNotFound", err)
	}
	if list, err := s.ListAgents(c); err != nil || len(list) != 1 || list[0].ID != b.ID {
		t.Errorf("ListAgents after delete = %v (err %v), want only %s", list, err, b.ID)
	}
	// Re-attestation after eviction is a fresh create.
	if err := s.CreateAgent(c, a); err != nil {
		t.Errorf("CreateAgent after delete: %v", err)
	}
}

func testAgentRoundTrip(t *testing.T, s datastore.Store) {
	c := ctx(t)
	tests := []struct {
		name string
		a    datastore.Agent
	}{
		{"zero expiry, no selectors", datastore.Agent{ID: "spiffe://example.org/agent/join/x", AttestationType: "join_token"}},
		{"full", agent("full")},
		{"pending SVID", func() datastore.Agent {
			a := agent("pending")
			a.NewSerialNumber = "1002"
			return a
		}()},
		{"non-UTC expiry", func() datastore.Agent {
			a := agent("tz")
			a.ExpiresAt = base.In(time.FixedZone("X", 5*3600))
			return a
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.CreateAgent(c, tt.a); err != nil {
				t.Fatalf("CreateAgent: %v", err)
			}
			got, err := s.GetAgent(c, tt.a.ID)
			if err != nil {
				t.Fatalf("GetAgent: %v", err)
			}
			want := tt.a
			want.CreatedAt, want.UpdatedAt = got.CreatedAt, got.UpdatedAt
			if d := diffAgent(got, want); d != "" {
				t.Errorf("GetAgent: %s", d)
			}
			if tt.a.ExpiresAt.IsZero() != got.ExpiresAt.IsZero() {
				t.Errorf("ExpiresAt zero-ness changed: %v -> %v", tt.a.ExpiresAt, got.ExpiresAt)
			}
		})
	}
	if _, err := s.GetAgent(c, "spiffe://example.org/agent/none"); !errors.Is(err, datastore.ErrNotFound) {
		t.Errorf("GetAgent unknown: err = %v, want ErrNotFound", err)
	}
}

// testAgentCreateRace: trust-on-first-use attestors rely on exactly one of
// many concurrent first attestations winning.
func testAgentCreateRace(t *testing.T, s datastore.Store) {
	const n = 50
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners []string
		others  []error
	)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			a := agent("race")
			a.SerialNumber = fmt.Sprint(i)
			<-start
			err := s.CreateAgent(ctx(t), a)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				winners = append(winners, a.SerialNumber)
			} else if !errors.Is(err, datastore.ErrAlreadyExists) {
				others = append(others, err)
			}
		})
	}
	close(start)
	wg.Wait()
	for _, err := range others {
		t.Errorf("CreateAgent: unexpected error %v", err)
	}
	if len(winners) != 1 {
		t.Fatalf("%d CreateAgent calls succeeded, want exactly 1", len(winners))
	}
	got, err := s.GetAgent(ctx(t), agent("race").ID)
	if err != nil {
		t.Fatalf("GetAgent: %v", err)
	}
	if got.SerialNumber != winners[0] {
		t.Errorf("stored serial %q, want the winner's %q", got.SerialNumber, winners[0])
	}
}

func testJoinTokens(t *testing.T, s datastore.Store) {
	c := ctx(t)
	tok := datastore.JoinToken{Token: "5c1b8e0e-2a44-4e1e-9d7e-0f1f6b1f7a01", ExpiresAt: base}
	if err := s.CreateJoinToken(c, tok); err != nil {
		t.Fatalf("CreateJoinToken: %v", err)
	}
	if err := s.CreateJoinToken(c, tok); !errors.Is(err, datastore.ErrAlreadyExists) {
		t.Errorf("second CreateJoinToken: err = %v, want ErrAlreadyExists", err)
	}
	got, err := s.ConsumeJoinToken(c, tok.Token, base.Add(-time.Minute))
	if err != nil {
		t.Fatalf("ConsumeJoinToken: %v", err)
	}
	if got.Token != tok.Token || !got.ExpiresAt.Equal(tok.ExpiresAt) {
		t.Errorf("ConsumeJoinToken = %+v, want %+v", got, tok)
	}
	if _, err := s.ConsumeJoinToken(c, tok.Token, base.Add(-time.Minute)); err != datastore.ErrNotFound { //nolint:errorlint // the very same value is the contract
		t.Errorf("second ConsumeJoinToken: err = %v, want exactly ErrNotFound", err)
	}
	if _, err := s.ConsumeJoinToken(c, "never-issued", base.Add(-time.Minute)); err != datastore.ErrNotFound { //nolint:errorlint // see above
		t.Errorf("unknown token: err = %v, want exactly ErrNotFound", err)
	}
	if _, err := s.ConsumeJoinToken(c, "", base.Add(-time.Minute)); err != datastore.ErrNotFound { //nolint:errorlint // see above
		t.Errorf("empty token: err = %v, want exactly ErrNotFound", err)
	}
}

// testJoinTokenExpiry: expired and unknown tokens are indistinguishable,
// and an expired token is deleted by the attempt.
func testJoinTokenExpiry(t *testing.T, s datastore.Store) {
	c := ctx(t)
	_, unknownErr := s.ConsumeJoinToken(c, "never-issued", base.Add(-time.Hour))
	tests := []struct {
		name string
		now  time.Time
	}{
		{"expires exactly now", base},
		{"expired a second ago", base.Add(time.Second)},
		{"expired long ago", base.Add(365 * 24 * time.Hour)},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := fmt.Sprintf("expiring-token-%d", i)
			if err := s.CreateJoinToken(c, datastore.JoinToken{Token: tok, ExpiresAt: base}); err != nil {
				t.Fatalf("CreateJoinToken: %v", err)
			}
			_, err := s.ConsumeJoinToken(c, tok, tt.now)
			if err != datastore.ErrNotFound || err != unknownErr { //nolint:errorlint // the very same value is the contract
				t.Fatalf("expired token: err = %v, unknown token: err = %v; want both exactly ErrNotFound", err, unknownErr)
			}
			// It is gone: even a clock before its expiry cannot use it now.
			if _, err := s.ConsumeJoinToken(c, tok, base.Add(-time.Hour)); err != datastore.ErrNotFound { //nolint:errorlint // see above
				t.Errorf("expired token still usable after a failed attempt: err = %v", err)
			}
		})
	}
}

func testJoinTokenConsumeRace(t *testing.T, s datastore.Store) {
	const n = 100
	tok := datastore.JoinToken{Token: "race-token", ExpiresAt: base}
	if err := s.CreateJoinToken(ctx(t), tok); err != nil {
		t.Fatalf("CreateJoinToken: %v", err)
	}
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		successes int
		others    []error
	)
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			got, err := s.ConsumeJoinToken(ctx(t), tok.Token, base.Add(-time.Hour))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && got.Token == tok.Token:
				successes++
			case err != datastore.ErrNotFound: //nolint:errorlint // the very same value is the contract
				others = append(others, fmt.Errorf("token %q, err %w", got.Token, err))
			}
		})
	}
	close(start)
	wg.Wait()
	for _, err := range others {
		t.Errorf("ConsumeJoinToken: unexpected outcome: %v", err)
	}
	if successes != 1 {
		t.Errorf("%d of %d concurrent ConsumeJoinToken calls succeeded, want exactly 1", successes, n)
	}
}

func testJoinTokenPrune(t *testing.T, s datastore.Store) {
	c := ctx(t)
	cut := base
	tokens := map[string]time.Time{
		"old":      cut.Add(-time.Hour),
		"just-old": cut.Add(-time.Second),
		"at-cut":   cut, // not expired *before* the cut: kept
		"new":      cut.Add(time.Hour),
	}
	for tok, exp := range tokens {
		if err := s.CreateJoinToken(c, datastore.JoinToken{Token: tok, ExpiresAt: exp}); err != nil {
			t.Fatalf("CreateJoinToken %s: %v", tok, err)
		}
	}
	if err := s.PruneJoinTokens(c, cut); err != nil {
		t.Fatalf("PruneJoinTokens: %v", err)
	}
	// Consume with a clock long before every expiry so only pruning decides.
	early := cut.Add(-24 * time.Hour)
	for tok, kept := range map[string]bool{"old": false, "just-old": false, "at-cut": true, "new": true} {
		_, err := s.ConsumeJoinToken(c, tok, early)
		if kept && err != nil {
			t.Errorf("token %s was pruned: %v", tok, err)
		}
		if !kept && err != datastore.ErrNotFound { //nolint:errorlint // the very same value is the contract
			t.Errorf("token %s survived pruning: err = %v", tok, err)
		}
	}
}

func testKV(t *testing.T, s datastore.Store) {
	c := ctx(t)
	if _, err := s.GetKV(c, "ca/state"); !errors.Is(err, datastore.ErrNotFound) {
		t.Errorf("GetKV missing: err = %v, want ErrNotFound", err)
	}
	tests := []struct {
		name  string
		key   string
		value []byte
	}{
		{"put", "ca/state", []byte(`{"active":"k1"}`)},
		{"overwrite", "ca/state", []byte(`{"active":"k2","prepared":"k3"}`)},
		{"binary", "blob", []byte{0, 1, 2, 0xff, 0xfe, 0, '\n'}},
		{"empty value", "empty", []byte{}},
		{"shrink", "ca/state", []byte("x")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.PutKV(c, tt.key, tt.value); err != nil {
				t.Fatalf("PutKV: %v", err)
			}
			got, err := s.GetKV(c, tt.key)
			if err != nil {
				t.Fatalf("GetKV: %v", err)
			}
			if !bytes.Equal(got, tt.value) {
				t.Errorf("GetKV = %q, want %q", got, tt.value)
			}
			if len(got) > 0 {
				got[0] ^= 0xff // the caller owns the returned slice
				if again, _ := s.GetKV(c, tt.key); !bytes.Equal(again, tt.value) {
					t.Errorf("modifying a returned value changed the store: %q", again)
				}
			}
		})
	}
}

func testKVSwap(t *testing.T, s datastore.Store) {
	c := ctx(t)
	tests := []struct {
		name        string
		old, value  []byte
		wantSwapped bool
		want        []byte // stored afterwards; nil: absent
	}{
		{"absent, old given", []byte("v0"), []byte("v1"), false, nil},
		{"absent, only if absent", nil, []byte("v1"), true, []byte("v1")},
		{"present, only if absent", nil, []byte("v2"), false, []byte("v1")},
		{"stale old", []byte("v0"), []byte("v2"), false, []byte("v1")},
		{"prefix of stored", []byte("v"), []byte("v2"), false, []byte("v1")},
		{"current old", []byte("v1"), []byte("v2"), true, []byte("v2")},
		{"to empty", []byte("v2"), []byte{}, true, []byte{}},
		{"empty is present", nil, []byte("v3"), false, []byte{}},
		{"from empty", []byte{}, []byte{0, 0xff, '\n'}, true, []byte{0, 0xff, '\n'}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			swapped, err := s.SwapKV(c, "ca/state", tt.old, tt.value)
			if err != nil {
				t.Fatalf("SwapKV: %v", err)
			}
			if swapped != tt.wantSwapped {
				t.Errorf("SwapKV swapped = %v, want %v", swapped, tt.wantSwapped)
			}
			got, err := s.GetKV(c, "ca/state")
			switch {
			case tt.want == nil && !errors.Is(err, datastore.ErrNotFound):
				t.Errorf("GetKV = %q, %v; want ErrNotFound", got, err)
			case tt.want != nil && (err != nil || !bytes.Equal(got, tt.want)):
				t.Errorf("GetKV = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if swapped, err := s.SwapKV(c, "other", []byte{}, []byte("x")); err != nil || swapped {
		t.Errorf("SwapKV from empty on an absent key = %v, %v; want false (absent is not empty)", swapped, err)
	}
}

// testKVSwapRace: of n concurrent swaps from the same old value (or from
// absent) exactly one wins, and the store holds the winner's value.
func testKVSwapRace(t *testing.T, s datastore.Store) {
	const n = 32
	for _, from := range [][]byte{nil, []byte("base")} {
		t.Run(fmt.Sprintf("from %q", from), func(t *testing.T) {
			c := ctx(t)
			key := fmt.Sprintf("race/%s", from)
			if from != nil {
				if err := s.PutKV(c, key, from); err != nil {
					t.Fatalf("PutKV: %v", err)
				}
			}
			var (
				wg      sync.WaitGroup
				mu      sync.Mutex
				winners [][]byte
				errs    []error
			)
			start := make(chan struct{})
			for i := range n {
				wg.Go(func() {
					v := fmt.Appendf(nil, "server-%d", i)
					<-start
					swapped, err := s.SwapKV(c, key, from, v)
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						errs = append(errs, err)
					}
					if swapped {
						winners = append(winners, v)
					}
				})
			}
			close(start)
			wg.Wait()
			for _, err := range errs {
				t.Errorf("SwapKV: %v", err)
			}
			if len(winners) != 1 {
				t.Fatalf("%d of %d concurrent swaps from %q won (%q), want exactly 1", len(winners), n, from, winners)
			}
			if got, err := s.GetKV(c, key); err != nil || !bytes.Equal(got, winners[0]) {
				t.Errorf("GetKV = %q, %v; want the winner's %q", got, err, winners[0])
			}
		})
	}
}
