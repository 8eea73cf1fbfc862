package workloadattest_test

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/peer"

	"github.com/hallmarkid/hallmark/agent/peercred"
	"github.com/hallmarkid/hallmark/agent/workloadattest"
	unixattestor "github.com/hallmarkid/hallmark/attestors/unix"
	"github.com/hallmarkid/hallmark/registration"
)

// fixed is a workload attestor returning fixed unix selectors.
type fixed []registration.Selector

func (fixed) Name() string { return "fixed" }
func (f fixed) Attest(context.Context, int32) ([]registration.Selector, error) {
	return f, nil
}

// selfContext returns a gRPC server context whose peer is this process,
// through a real peercred handshake on a socketpair.
func selfContext(t *testing.T) (context.Context, func()) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		conns[i], err = net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { conns[1].Close() })
	conn, ai, err := peercred.TransportCredentials().ServerHandshake(conns[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return peer.NewContext(context.Background(), &peer.Peer{AuthInfo: ai}), func() { conn.Close() }
}

func unixSel(v string) registration.Selector { return registration.Selector{Type: "unix", Value: v} }

func TestCallerComparesUIDAndGID(t *testing.T) {
	uid := "uid:" + strconv.Itoa(os.Geteuid())
	gid := "gid:" + strconv.Itoa(os.Getegid())
	tests := []struct {
		name    string
		sels    []registration.Selector
		wantErr string
	}{
		{name: "same uid and gid", sels: []registration.Selector{unixSel(uid), unixSel(gid), unixSel("supplementary_gid:4242")}},
		{name: "other uid", sels: []registration.Selector{unixSel("uid:4242"), unixSel(gid)}, wantErr: "attested unix:uid:4242, the kernel said " + uid},
		{name: "other gid", sels: []registration.Selector{unixSel(uid), unixSel("gid:4242")}, wantErr: "attested unix:gid:4242, the kernel said " + gid},
		{name: "no unix selectors", sels: []registration.Selector{{Type: "k8s", Value: "ns:default"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, _ := selfContext(t)
			c, err := workloadattest.New(nil, fixed(tt.sels)).Caller(ctx)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c.PID != int32(os.Getpid()) || len(c.Selectors) != len(tt.sels) {
					t.Errorf("Caller() = %+v", c)
				}
				if err := c.Verify(); err != nil {
					t.Errorf("Verify() = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, peercred.ErrChanged) {
				t.Fatalf("Caller() = %v, want %q wrapping ErrChanged", err, tt.wantErr)
			}
		})
	}
}

func TestCallerVerify(t *testing.T) {
	ctx, closeConn := selfContext(t)
	c, err := workloadattest.New(nil, unixattestor.New(unixattestor.Config{})).Caller(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantGroups, err := os.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Groups) != len(wantGroups) {
		t.Errorf("Caller().Groups = %v, want %v", c.Groups, wantGroups)
	}
	if err := c.Verify(); err != nil {
		t.Fatalf("Verify() = %v", err)
	}
	closeConn()
	if err := c.Verify(); err == nil || !strings.HasPrefix(err.Error(), "workloadattest: peercred: ") {
		t.Errorf("Verify() after the connection closed = %v", err)
	}
	if err := (workloadattest.Caller{}).Verify(); err == nil || !strings.Contains(err.Error(), "does not come from a handshake") {
		t.Errorf("zero Caller Verify() = %v, want an error (fail closed)", err)
	}
}

// Each failure reaches OnFailure's function with its reason; a success
// does not.
func TestCallerFailureReasons(t *testing.T) {
	uid := "uid:" + strconv.Itoa(os.Geteuid())
	tests := []struct {
		name       string
		noCreds    bool
		attestor   *recorder
		sels       []registration.Selector
		wantReason string
	}{
		{name: "attested", sels: []registration.Selector{unixSel(uid)}},
		{name: "no credentials", noCreds: true, wantReason: workloadattest.ReasonNoCredentials},
		{name: "attestor failed", attestor: &recorder{name: "k8s", err: errors.New("kubelet unreachable")}, wantReason: workloadattest.ReasonAttestorFailed},
		{name: "attestor timed out", attestor: &recorder{name: "k8s", err: context.DeadlineExceeded}, wantReason: workloadattest.ReasonTimeout},
		{name: "ids changed", sels: []registration.Selector{unixSel("uid:4242")}, wantReason: workloadattest.ReasonCallerChanged},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if !tt.noCreds {
				ctx, _ = selfContext(t)
			}
			var w interface {
				Name() string
				Attest(context.Context, int32) ([]registration.Selector, error)
			} = fixed(tt.sels)
			if tt.attestor != nil {
				w = tt.attestor
			}
			var got []string
			_, err := workloadattest.New(nil, w).OnFailure(func(r string) { got = append(got, r) }).Caller(ctx)
			if tt.wantReason == "" {
				if err != nil || len(got) != 0 {
					t.Fatalf("Caller() = %v, reasons %v", err, got)
				}
				return
			}
			if err == nil || len(got) != 1 || got[0] != tt.wantReason {
				t.Fatalf("Caller() = %v, reasons %v, want [%s]", err, got, tt.wantReason)
			}
		})
	}
}
