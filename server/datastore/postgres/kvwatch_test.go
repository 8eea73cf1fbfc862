package postgres_test

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestWatchKV: a KV write committed on server A (PutKV, a SwapKV that
// swapped) is announced to a watcher on server B with its key; a swap that
// lost announces nothing; a key too long to name is announced as "" and
// still written; a reconnection is announced as "".
func TestWatchKV(t *testing.T) {
	a, b, connString := twoServers(t)
	ctx, cancel := context.WithCancel(t.Context())
	keys := make(chan string, 16)
	done := make(chan error, 1)
	go func() { done <- b.WatchKV(ctx, func(key string) { keys <- key }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("WatchKV returned %v, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("WatchKV did not return after its context ended")
		}
	})
	next := func() string {
		t.Helper()
		select {
		case k := <-keys:
			return k
		case <-time.After(5 * time.Second):
			t.Fatal("no KV report within 5 s")
			return ""
		}
	}
	if got := next(); got != "" {
		t.Fatalf("first report = %q, want \"\" (connected)", got)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(a.PutKV(ctx, "federation/static-trust-domains", []byte(`["a.org"]`)))
	if got := next(); got != "federation/static-trust-domains" {
		t.Fatalf("after PutKV: report %q", got)
	}
	swapped, err := a.SwapKV(ctx, "ca/x509_authorities", nil, []byte("v1"))
	must(err)
	if !swapped {
		t.Fatal("first SwapKV did not swap")
	}
	if got := next(); got != "ca/x509_authorities" {
		t.Fatalf("after SwapKV (insert): report %q", got)
	}
	// Lost swaps (stale old value, present key with old == nil) announce
	// nothing; the next swap, on the watching server itself, does.
	for _, old := range [][]byte{[]byte("stale"), nil} {
		if swapped, err := a.SwapKV(ctx, "ca/x509_authorities", old, []byte("lost")); err != nil || swapped {
			t.Fatalf("SwapKV from %q = %v, %v; want false", old, swapped, err)
		}
	}
	if swapped, err := b.SwapKV(ctx, "ca/x509_authorities", []byte("v1"), []byte("v2")); err != nil || !swapped {
		t.Fatalf("SwapKV (update) = %v, %v", swapped, err)
	}
	if got := next(); got != "ca/x509_authorities" {
		t.Fatalf("after SwapKV (update): report %q, want the key (and nothing for the lost swaps)", got)
	}
	// A key longer than a notification may name is written all the same.
	long := "federation/bundle/" + strings.Repeat("x", 2000)
	must(a.PutKV(ctx, long, []byte("b")))
	if got := next(); got != "" {
		t.Fatalf("after PutKV of a long key: report %q, want \"\" (some key)", got)
	}
	if v, err := b.GetKV(ctx, long); err != nil || string(v) != "b" {
		t.Fatalf("GetKV(long key) = %q, %v", v, err)
	}

	admin := rawConn(t, connString)
	var killed int
	if err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = 'hallmark-server (listen)'`).Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("terminated %d listener connections (%v), want 1", killed, err)
	}
	// Written while the listener is away: the "" on reconnection covers it.
	must(a.PutKV(ctx, "jwt/keys", []byte("k")))
	for {
		if got := next(); got == "" {
			break
		}
	}
	must(a.PutKV(ctx, "federation/relationships", []byte("{}")))
	for {
		if got := next(); got == "federation/relationships" {
			break
		}
	}
}
