package workloadattest_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/agent/peercred"
	"github.com/hallmarkid/hallmark/agent/workloadattest"
	unixattestor "github.com/hallmarkid/hallmark/attestors/unix"
	"github.com/hallmarkid/hallmark/registration"
)

// printed is a reusable workload attestor: its selectors and fingerprint
// are whatever the test sets.
type printed struct {
	mu       sync.Mutex
	value    string // selector value
	print    string // fingerprint
	printErr error
	attErr   error
	reuseFor time.Duration
	attests  int
}

func (p *printed) Name() string { return "printed" }
func (p *printed) Attest(context.Context, int32) ([]registration.Selector, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.attests++
	if p.attErr != nil {
		return nil, p.attErr
	}
	return []registration.Selector{{Type: "printed", Value: p.value}}, nil
}
func (p *printed) Fingerprint(context.Context, int32) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.print, p.printErr
}
func (p *printed) ReuseFor() time.Duration { return p.reuseFor }

func (p *printed) set(value, print string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.value, p.print = value, print
}

// mustCaller attests and returns the selector values.
func mustCaller(t *testing.T, a *workloadattest.Attestor, ctx context.Context) []string {
	t.Helper()
	c, err := a.Caller(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range c.Selectors {
		out = append(out, s.Type+":"+s.Value)
	}
	return out
}

// A connection's attestation is reused while the fingerprint is unchanged
// and it is younger than ReuseFor; a changed fingerprint or an older
// result attests anew, and the new selectors are served, never the old.
func TestCallerReusesAttestation(t *testing.T) {
	p := &printed{value: "a", print: "cgroup-a", reuseFor: time.Minute}
	a := workloadattest.New(nil, p)
	now := time.Now()
	workloadattest.SetClock(a, func() time.Time { return now })
	ctx, _ := selfContext(t)

	for range 5 {
		if got := mustCaller(t, a, ctx); len(got) != 1 || got[0] != "printed:a" {
			t.Fatalf("selectors %v", got)
		}
	}
	if n := a.Attestations(); n != 1 {
		t.Fatalf("%d attestations for 5 calls with nothing changed, want 1", n)
	}

	p.set("b", "cgroup-b") // e.g. moved to another cgroup
	if got := mustCaller(t, a, ctx); got[0] != "printed:b" {
		t.Fatalf("after the fingerprint changed: %v, want printed:b", got)
	}
	if n := a.Attestations(); n != 2 {
		t.Fatalf("attestations = %d, want 2", n)
	}

	p.set("c", "cgroup-b") // data from elsewhere changed: seen after ReuseFor
	if got := mustCaller(t, a, ctx); got[0] != "printed:b" {
		t.Fatalf("within ReuseFor: %v", got)
	}
	now = now.Add(time.Minute)
	if got := mustCaller(t, a, ctx); got[0] != "printed:c" {
		t.Fatalf("after ReuseFor: %v, want printed:c", got)
	}

	// Another connection of the same process has its own attestation.
	ctx2, _ := selfContext(t)
	mustCaller(t, a, ctx2)
	if n := a.Attestations(); n != 4 {
		t.Fatalf("attestations = %d, want 4 (one for the new connection)", n)
	}
	// So does another attestor set on the same connection.
	b := workloadattest.New(nil, p)
	mustCaller(t, b, ctx)
	if b.Attestations() != 1 {
		t.Fatal("an attestor reused another attestor's result")
	}
}

// Nothing is reused when any attestor is not reusable, when ReuseFor is
// zero, after a failure, or when a fingerprint cannot be read.
func TestCallerDoesNotReuse(t *testing.T) {
	t.Run("an attestor is not reusable", func(t *testing.T) {
		p := &printed{value: "a", reuseFor: time.Minute}
		a := workloadattest.New(nil, p, fixed{unixSel("uid:" + strconv.Itoa(os.Geteuid()))})
		ctx, _ := selfContext(t)
		for range 3 {
			mustCaller(t, a, ctx)
		}
		if n := a.Attestations(); n != 3 {
			t.Fatalf("attestations = %d, want 3", n)
		}
	})
	t.Run("ReuseFor is zero", func(t *testing.T) {
		a := workloadattest.New(nil, &printed{value: "a"})
		ctx, _ := selfContext(t)
		mustCaller(t, a, ctx)
		mustCaller(t, a, ctx)
		if n := a.Attestations(); n != 2 {
			t.Fatalf("attestations = %d, want 2", n)
		}
	})
	t.Run("failures are not stored", func(t *testing.T) {
		p := &printed{value: "a", reuseFor: time.Minute, attErr: errors.New("kubelet down")}
		a := workloadattest.New(nil, p)
		ctx, _ := selfContext(t)
		for range 2 {
			if _, err := a.Caller(ctx); err == nil || !strings.Contains(err.Error(), "kubelet down") {
				t.Fatalf("Caller() = %v", err)
			}
		}
		if p.attests != 2 {
			t.Fatalf("attestor ran %d times, want 2", p.attests)
		}
	})
	t.Run("fingerprint unreadable", func(t *testing.T) {
		p := &printed{value: "a", print: "x", reuseFor: time.Minute}
		a := workloadattest.New(nil, p)
		ctx, _ := selfContext(t)
		mustCaller(t, a, ctx)
		p.mu.Lock()
		p.printErr = errors.New("no such file")
		p.mu.Unlock()
		mustCaller(t, a, ctx)
		mustCaller(t, a, ctx)
		if n := a.Attestations(); n != 3 {
			t.Fatalf("attestations = %d, want 3", n)
		}
	})
}

// A reused attestation is served only after Verify passes on the call: a
// closed connection (or a changed process) gets an error, not the stored
// selectors.
func TestCallerReuseVerifies(t *testing.T) {
	p := &printed{value: "a", print: "x", reuseFor: time.Minute}
	a := workloadattest.New(nil, p)
	var reasons []string
	a.OnFailure(func(r string) { reasons = append(reasons, r) })
	ctx, closeConn := selfContext(t)
	mustCaller(t, a, ctx)
	closeConn()
	_, err := a.Caller(ctx)
	if err == nil || !strings.Contains(err.Error(), "connection closed") {
		t.Fatalf("Caller() after close = %v", err)
	}
	if len(reasons) != 1 || reasons[0] != workloadattest.ReasonCallerChanged {
		t.Fatalf("reasons %v", reasons)
	}
	if a.Attestations() != 1 {
		t.Fatal("attested again instead of failing the identity check")
	}
	if info, _ := peercred.FromContext(ctx); info.Memo() == nil {
		t.Fatal("AuthInfo from a handshake has no memo")
	}
	if (peercred.AuthInfo{}).Memo() != nil {
		t.Fatal("zero AuthInfo has a memo")
	}
}

// The real attestors are reusable, with the bounds they document.
func TestRealAttestorsAreReusable(t *testing.T) {
	type reusable interface {
		Fingerprint(context.Context, int32) (string, error)
		ReuseFor() time.Duration
	}
	u := unixattestor.New(unixattestor.Config{DiscoverWorkloadPath: true, WorkloadSizeLimit: -1})
	var w any = u
	r, ok := w.(reusable)
	if !ok || r.ReuseFor() != 30*time.Second {
		t.Fatalf("unix attestor: reusable %v", ok)
	}
	fp, err := r.Fingerprint(context.Background(), int32(os.Getpid()))
	exe, _ := os.Executable()
	if err != nil || !strings.HasPrefix(fp, exe+"\x00") {
		t.Fatalf("unix Fingerprint = %q, %v; want the executable %s and its version", fp, err, exe)
	}
	if fp, err := unixattestor.New(unixattestor.Config{}).Fingerprint(context.Background(), 1); err != nil || fp != "" {
		t.Fatalf("unix Fingerprint without path discovery = %q, %v", fp, err)
	}
	a := workloadattest.New(nil, u)
	ctx, _ := selfContext(t)
	mustCaller(t, a, ctx)
	mustCaller(t, a, ctx)
	if n := a.Attestations(); n != 1 {
		t.Fatalf("unix attestor: %d attestations for 2 calls, want 1", n)
	}
}
