package admission_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/hallmarkid/hallmark/internal/busy"
	"github.com/hallmarkid/hallmark/server/admission"
)

// TestGateAnswersBusyBeforeTLS: a connection over the per-source or the
// total bound is answered with a busy refusal — five bytes with a retry
// window, before any TLS — and closed; a TLS client sees them as the
// header of a record that is not TLS. The bounds themselves do not move:
// the refused connection holds nothing (TestGateConnectionBounds).
func TestGateAnswersBusyBeforeTLS(t *testing.T) {
	p := newPKI(t)
	l := admission.DefaultLimits()
	l.MaxConns, l.MaxConnsPerSource = 3, 2
	l.FirstMessageTimeout = 3 * time.Second
	addr, g := startGate(t, p, l)

	hold := func(src string) {
		c, err := dialer(src)(context.Background(), addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	}
	refused := func(what, src string) {
		t.Helper()
		c, err := dialer(src)(context.Background(), addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if d, ok := busy.Parse(b); !ok || d < busy.Unit || d > busy.MaxWindow {
			t.Fatalf("%s: server sent %q, want a busy refusal", what, b)
		}
	}
	hold("127.0.4.1")
	hold("127.0.4.1")
	refused("third connection from one source", "127.0.4.1")
	hold("127.0.4.2")
	waitStats(t, g, 3)
	refused("fourth connection in all", "127.0.4.3")

	// A TLS client reads the refusal as a record header that is not TLS.
	raw, err := dialer("127.0.4.3")(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}) //nolint:gosec // not under test
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	err = tc.Handshake()
	var hdr tls.RecordHeaderError
	if !errors.As(err, &hdr) {
		t.Fatalf("TLS handshake: %v, want a tls.RecordHeaderError", err)
	}
	if _, ok := busy.Parse(hdr.RecordHeader[:]); !ok {
		t.Fatalf("TLS handshake: record header %q, want a busy refusal", hdr.RecordHeader[:])
	}
	if st := g.Stats(); st.Handshakes != 3 {
		t.Fatalf("stats %+v after refusals, want the 3 held handshakes only", st)
	}
}

// waitStats waits until the gate holds n handshakes (the accept loop
// counts a connection a moment after the client's dial returns).
func waitStats(t *testing.T, g *admission.Gate, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); g.Stats().Handshakes != n; {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v, want %d handshakes", g.Stats(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestGateInflightWaitsBriefly: an attestation past the in-flight bound
// waits for a slot (up to InflightWait) instead of being refused at once,
// so the agent does not pay a new TLS handshake for a slot that frees a
// moment later; the bound itself holds: while it waits, nothing more is in
// flight.
func TestGateInflightWaitsBriefly(t *testing.T) {
	p := newPKI(t)
	l := admission.DefaultLimits()
	l.MaxInflightAttestations = 1
	addr, g := startGate(t, p, l)

	ctx, cancel := context.WithCancel(context.Background())
	first, err := client(t, addr, "127.0.5.1", nil).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = first.Recv()
	}
	if err != nil {
		t.Fatal(err)
	}
	second := make(chan error, 1)
	go func() { second <- openWatch(t, client(t, addr, "127.0.5.2", nil)) }()
	for deadline := time.Now().Add(5 * time.Second); g.Stats().AttestationsWaiting != 1; time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: the second attestation never waited", g.Stats())
		}
	}
	if got := g.Stats().AttestationsInFlight; got != 1 {
		t.Fatalf("%d in flight while one waits, want 1", got)
	}
	cancel() // the first attestation ends: the waiting one takes its slot
	if err := <-second; err != nil {
		t.Fatalf("waiting attestation: %v, want served", err)
	}
}
