// Package authoritytest is an in-memory KV store with datastore.KV's
// compare-and-swap contract (authority.KVStore), for the tests of the
// rotation engine and of its kinds (server/authority, server/ca,
// server/jwtsigner): servers sharing it race for real, and a test can make
// them read at the same instant or make the store fail.
//
// Only tests import it.
package authoritytest

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
)

// MemKV is an in-memory KV store. It is safe for concurrent use.
type MemKV struct {
	notFound error

	mu      sync.Mutex // guards the fields that follow
	m       map[string][]byte
	gate    *readGate // nil: reads do not wait
	writes  int       // successful writes
	failing bool
}

// readGate holds n reads until all n have read.
type readGate struct {
	n    int
	open chan struct{}
}

// NewMemKV returns an empty store whose GetKV returns notFound for an
// absent key.
func NewMemKV(notFound error) *MemKV {
	return &MemKV{notFound: notFound, m: map[string][]byte{}}
}

// errDown is what every call returns while the store fails.
var errDown = errors.New("memkv: down")

// GetKV returns the value of key.
func (k *MemKV) GetKV(ctx context.Context, key string) ([]byte, error) {
	k.mu.Lock()
	if k.failing {
		k.mu.Unlock()
		return nil, errDown
	}
	v, ok := k.m[key]
	v = slices.Clone(v)
	g := k.gate
	if g != nil {
		if g.n--; g.n == 0 {
			close(g.open)
			k.gate = nil
		}
	}
	k.mu.Unlock()
	if g != nil {
		select {
		case <-g.open:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if !ok {
		return nil, k.notFound
	}
	return v, nil
}

// SwapKV stores value only if the stored value is still old (absent when
// old is nil), and reports whether it did.
func (k *MemKV) SwapKV(_ context.Context, key string, old, value []byte) (bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.failing {
		return false, errDown
	}
	if !Swap(k.m, key, old, value) {
		return false, nil
	}
	k.writes++
	return true, nil
}

// PutKV stores value whatever is stored, as servers of versions without
// compare-and-swap did.
func (k *MemKV) PutKV(_ context.Context, key string, value []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.failing {
		return errDown
	}
	k.m[key] = slices.Clone(value)
	k.writes++
	return nil
}

// Set stores value under key without counting it as a write: a state
// another server left.
func (k *MemKV) Set(key string, value []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.m[key] = slices.Clone(value)
}

// Snapshot returns a copy of everything stored.
func (k *MemKV) Snapshot() map[string][]byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return maps.Clone(k.m)
}

// HoldReads makes the next n reads (of any key) return only once all n
// have read, each what the store held when it read: servers then act on
// the same view at the same instant, a genuine race.
func (k *MemKV) HoldReads(n int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.gate = &readGate{n: n, open: make(chan struct{})}
}

// Writes returns how many writes succeeded.
func (k *MemKV) Writes() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.writes
}

// SetFailing makes every call fail ("memkv: down") until called with
// false.
func (k *MemKV) SetFailing(failing bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.failing = failing
}

// Swap is SwapKV on m: it stores value under key only if the stored value
// is still old (absent when old is nil), and reports whether it did.
func Swap(m map[string][]byte, key string, old, value []byte) bool {
	cur, ok := m[key]
	if (old == nil && ok) || (old != nil && (!ok || !bytes.Equal(cur, old))) {
		return false
	}
	m[key] = slices.Clone(value)
	return true
}
