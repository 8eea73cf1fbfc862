package bundlepub_test

import (
	"context"
	"crypto/x509"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/server/bundlepub"
)

// memTarget records what it was given; it fails while failing is set.
type memTarget struct {
	mu      sync.Mutex
	content []byte
	calls   int
	failing bool
	got     chan struct{}
}

func (m *memTarget) String() string { return "mem" }

func (m *memTarget) Publish(_ context.Context, c []byte) (bool, error) {
	m.mu.Lock()
	defer func() {
		m.mu.Unlock()
		select {
		case m.got <- struct{}{}:
		default:
		}
	}()
	m.calls++
	if m.failing {
		return false, errors.New("mem: down")
	}
	if string(m.content) == string(c) {
		return false, nil
	}
	m.content = append([]byte(nil), c...)
	return true, nil
}

func (m *memTarget) holds(want []byte) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return string(m.content) == string(want)
}

// bundleSource imitates server/ca's Bundle and BundleChanged.
type bundleSource struct {
	mu      sync.Mutex
	certs   []*x509.Certificate
	changed chan struct{}
}

func (b *bundleSource) Bundle() []*x509.Certificate {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.certs
}

func (b *bundleSource) Changed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.changed
}

func (b *bundleSource) set(certs ...*x509.Certificate) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.certs = certs
	close(b.changed)
	b.changed = make(chan struct{})
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}

func TestPublisherRun(t *testing.T) {
	now := time.Now()
	a, b := ca(t, now), ca(t, now.Add(time.Second))
	src := &bundleSource{certs: []*x509.Certificate{a}, changed: make(chan struct{})}
	tg := &memTarget{got: make(chan struct{}, 1)}
	p := bundlepub.New(bundlepub.Config{TrustDomain: td, Bundle: src.Bundle, Changed: src.Changed, Resync: time.Hour,
		Outputs: []bundlepub.Output{{Target: tg, Format: bundlepub.FormatPEM}}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()

	encA, _ := bundlepub.Encode(td, []*x509.Certificate{a}, bundlepub.FormatPEM)
	waitUntil(t, time.Second, "published at start", func() bool { return tg.holds(encA) })
	src.set(a, b)
	encAB, _ := bundlepub.Encode(td, []*x509.Certificate{a, b}, bundlepub.FormatPEM)
	took := waitUntil(t, time.Second, "published on change", func() bool { return tg.holds(encAB) })
	t.Logf("change published after %v", took)

	// A failing target is retried (after 1 s), and a change while it fails
	// is retried at once.
	tg.mu.Lock()
	tg.failing = true
	tg.mu.Unlock()
	src.set(b)
	<-tg.got
	tg.mu.Lock()
	tg.failing = false
	tg.mu.Unlock()
	encB, _ := bundlepub.Encode(td, []*x509.Certificate{b}, bundlepub.FormatPEM)
	waitUntil(t, 3*time.Second, "published after the failure", func() bool { return tg.holds(encB) })

	cancel()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("Run did not return after cancel")
	}
}
