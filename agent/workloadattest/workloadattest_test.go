package workloadattest_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/hallmarkid/hallmark/agent/workloadattest"
	"github.com/hallmarkid/hallmark/attestors/unix"
	"github.com/hallmarkid/hallmark/registration"
)

// recorder is a workload attestor that records whether it ran under a
// deadline and returns fixed selectors or an error.
type recorder struct {
	name        string
	local       bool
	err         error
	hadDeadline bool
}

func (r *recorder) Name() string { return r.name }
func (r *recorder) Local() bool  { return r.local }
func (r *recorder) Attest(ctx context.Context, _ int32) ([]registration.Selector, error) {
	_, r.hadDeadline = ctx.Deadline()
	if r.err != nil {
		return nil, r.err
	}
	return []registration.Selector{{Type: r.name, Value: "v"}}, nil
}

func TestAttestDeadlineOnlyForBlockingAttestors(t *testing.T) {
	local := &recorder{name: "local", local: true}
	remote := &recorder{name: "remote"}
	a := workloadattest.New(nil, local, remote)
	sels, err := a.Attest(context.Background(), int32(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	if len(sels) != 2 || sels[0].Type != "local" || sels[1].Type != "remote" {
		t.Fatalf("selectors = %v, want the union in order", sels)
	}
	if local.hadDeadline {
		t.Error("local attestor ran under a deadline")
	}
	if !remote.hadDeadline {
		t.Error("blocking attestor ran without the attestation deadline")
	}
}

func TestAttestFailsClosed(t *testing.T) {
	boom := &recorder{name: "k8s", err: errors.New("kubelet unreachable")}
	a := workloadattest.New(nil, &recorder{name: "local", local: true}, boom)
	sels, err := a.Attest(context.Background(), int32(os.Getpid()))
	if err == nil || !strings.Contains(err.Error(), "k8s: kubelet unreachable") {
		t.Fatalf("Attest() = %v, %v; want the k8s error", sels, err)
	}
	if sels != nil {
		t.Errorf("selectors returned with an error: %v", sels)
	}
}

func TestUnixAttestorIsLocal(t *testing.T) {
	var u any = &unix.Attestor{}
	l, ok := u.(interface{ Local() bool })
	if !ok || !l.Local() {
		t.Fatal("unix attestor must declare itself local (no per-call timer)")
	}
}

func TestCallerWithoutCredentials(t *testing.T) {
	a := workloadattest.New(nil)
	if _, err := a.Caller(context.Background()); !errors.Is(err, workloadattest.ErrNoCredentials) {
		t.Fatalf("Caller() without peer credentials = %v, want ErrNoCredentials", err)
	}
}
