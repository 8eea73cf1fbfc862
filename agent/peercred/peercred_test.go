package peercred_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/hallmarkid/hallmark/agent/peercred"
)

// The test binary doubles as the client process of some tests: with
// helperEnv set it runs helperMain instead of the tests.
const helperEnv = "PEERCRED_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		if err := helperMain(mode, os.Args[len(os.Args)-1]); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// helperMain runs in a child process.
//
//	call:         make one Health.Check call over sock and exit
//	pass:         connect to sock, send the connection to the parent over
//	              fd 3, then wait for stdin to close
//	connect-exit: connect to sock and exit at once
//	obey:         connect to sock, then run commands from stdin (see obey)
//	wait:         print "ready", then wait for stdin to close
func helperMain(mode, sock string) error {
	switch mode {
	case "call":
		cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	case "pass":
		c, err := net.Dial("unix", sock)
		if err != nil {
			return err
		}
		f, err := c.(*net.UnixConn).File()
		if err != nil {
			return err
		}
		if err := unix.Sendmsg(3, []byte{0}, unix.UnixRights(int(f.Fd())), nil, 0); err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, os.Stdin)
		return err
	case "connect-exit":
		_, err := net.Dial("unix", sock)
		return err
	case "obey":
		return obey(sock)
	case "wait":
		fmt.Println("ready")
		_, err := io.Copy(io.Discard, os.Stdin)
		return err
	}
	return fmt.Errorf("unknown mode %q", mode)
}

// record is what the server saw on one call.
type record struct {
	info     peercred.AuthInfo
	ok       bool
	aliveErr error
}

// worldDir returns a temporary directory that processes of any uid can
// traverse, for sockets and binaries used by unprivileged children.
func worldDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "peercred-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startServer runs a gRPC server with peercred credentials and the stock
// health service on a unix socket in dir. Every call's view of its caller
// is sent on the returned channel.
func startServer(t *testing.T, dir string) (string, <-chan record) {
	t.Helper()
	sock := filepath.Join(dir, "api.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sock, 0o777); err != nil {
		t.Fatal(err)
	}
	records := make(chan record, 16)
	srv := grpc.NewServer(
		grpc.Creds(peercred.TransportCredentials()),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			info, ok := peercred.FromContext(ctx)
			r := record{info: info, ok: ok}
			if ok {
				r.aliveErr = info.StillAlive()
			}
			records <- r
			return h(ctx, req)
		}),
	)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return sock, records
}

func next(t *testing.T, records <-chan record) record {
	t.Helper()
	select {
	case r := <-records:
		if !r.ok {
			t.Fatal("no peercred AuthInfo in the handler's context")
		}
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no call reached the server")
	}
	panic("unreachable")
}

func check(t *testing.T, cc *grpc.ClientConn) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

// modes runs f once with SO_PEERPIDFD and once with the pidfd_open fallback.
func modes(t *testing.T, f func(t *testing.T)) {
	t.Run("SO_PEERPIDFD", f)
	t.Run("pidfd_open", func(t *testing.T) {
		peercred.ForceFallback(t)
		f(t)
	})
}

func TestCallerIsSelf(t *testing.T) {
	modes(t, func(t *testing.T) {
		sock, records := startServer(t, t.TempDir())
		cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		if err := check(t, cc); err != nil {
			t.Fatal(err)
		}
		r := next(t, records)
		if r.info.PID != int32(os.Getpid()) || r.info.UID != uint32(os.Geteuid()) || r.info.GID != uint32(os.Getegid()) {
			t.Errorf("AuthInfo = pid %d uid %d gid %d, want %d %d %d",
				r.info.PID, r.info.UID, r.info.GID, os.Getpid(), os.Geteuid(), os.Getegid())
		}
		if got := r.info.AuthType(); got != "peercred" {
			t.Errorf("AuthType() = %q", got)
		}
		if r.aliveErr != nil {
			t.Errorf("StillAlive() = %v", r.aliveErr)
		}
		// The handshake recorded the caller's start time (PID reuse at
		// handshake is refused against it; see the fallback tests).
		if peercred.StartTime(r.info) == 0 {
			t.Error("handshake recorded no start time")
		}
	})
}

// copyTestBinary copies the running test binary into dir so that a child
// running as an unprivileged uid can execute it (go test's build directory
// is private to root).
func copyTestBinary(t *testing.T, dir string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "helper.test")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

func TestCallerWithAnotherUID(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test runs as root: it starts a child as uid 65534")
	}
	dir := worldDir(t)
	sock, records := startServer(t, dir)
	cmd := exec.Command(copyTestBinary(t, dir), "-test.run=^$", sock)
	cmd.Env = append(os.Environ(), helperEnv+"=call")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	r := next(t, records)
	if r.info.PID != int32(cmd.Process.Pid) || r.info.UID != 65534 || r.info.GID != 65534 {
		t.Errorf("AuthInfo = pid %d uid %d gid %d, want %d 65534 65534", r.info.PID, r.info.UID, r.info.GID, cmd.Process.Pid)
	}
	if r.aliveErr != nil {
		t.Errorf("StillAlive() during the call = %v", r.aliveErr)
	}
}

// startPasser starts a child that connects to sock and hands the
// connection to this process, so the connection outlives its creator.
func startPasser(t *testing.T, sock string) (*exec.Cmd, net.Conn, io.Closer) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "ours"), os.NewFile(uintptr(fds[1]), "theirs")
	defer ours.Close()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$", sock)
	cmd.Env = append(os.Environ(), helperEnv+"=pass")
	cmd.ExtraFiles = []*os.File{theirs}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(int(ours.Fd()), buf, oob, 0)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("control messages %v: %v", msgs, err)
	}
	rights, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(rights) != 1 {
		t.Fatalf("rights %v: %v", rights, err)
	}
	f := os.NewFile(uintptr(rights[0]), "passed")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	return cmd, c, stdin
}

func TestCallerExited(t *testing.T) {
	modes(t, func(t *testing.T) {
		sock, records := startServer(t, t.TempDir())
		cmd, c, _ := startPasser(t, sock)
		var used atomic.Bool
		cc, err := grpc.NewClient("passthrough:///peer",
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) {
				if used.Swap(true) {
					return nil, errors.New("the passed connection is used up")
				}
				return c, nil
			}))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()

		if err := check(t, cc); err != nil {
			t.Fatal(err)
		}
		r := next(t, records)
		if r.info.PID != int32(cmd.Process.Pid) {
			t.Fatalf("PID = %d, want the child's %d", r.info.PID, cmd.Process.Pid)
		}
		if r.aliveErr != nil {
			t.Fatalf("StillAlive() while the child runs = %v", r.aliveErr)
		}

		// The child exits; the connection it made lives on in this process.
		// As a zombie its /proc entry and start time are still there: only
		// the pidfd can tell.
		cmd.Process.Kill()
		waitZombie(t, cmd.Process.Pid)
		if err := check(t, cc); err != nil {
			t.Fatal(err)
		}
		r = next(t, records)
		if r.aliveErr == nil || !strings.Contains(r.aliveErr.Error(), "process exited") {
			t.Errorf("StillAlive() after the child exited = %v, want process exited", r.aliveErr)
		}

		// Reaped: the PID is free (and may be reused).
		cmd.Wait()
		if err := check(t, cc); err != nil {
			t.Fatal(err)
		}
		r = next(t, records)
		if r.aliveErr == nil || !strings.Contains(r.aliveErr.Error(), fmt.Sprintf("pid %d", cmd.Process.Pid)) {
			t.Errorf("StillAlive() after the child was reaped = %v, want an error", r.aliveErr)
		}
	})
}

// waitZombie waits until every thread of pid has exited and pid is not
// reaped yet.
func waitZombie(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "\nState:\tZ") && strings.Contains(string(b), "\nThreads:\t1\n") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d did not become a zombie:\n%s", pid, b)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestStillAliveAfterClose(t *testing.T) {
	a, b, err := socketpair()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	conn, ai, err := peercred.TransportCredentials().ServerHandshake(a)
	if err != nil {
		t.Fatal(err)
	}
	info := ai.(peercred.AuthInfo)
	if err := info.StillAlive(); err != nil {
		t.Fatalf("StillAlive() = %v", err)
	}
	conn.Close()
	conn.Close() // idempotent
	if err := info.StillAlive(); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("StillAlive() after close = %v, want connection closed", err)
	}
}

func socketpair() (*net.UnixConn, *net.UnixConn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	var conns [2]*net.UnixConn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			return nil, nil, err
		}
		conns[i] = c.(*net.UnixConn)
	}
	return conns[0], conns[1], nil
}

func TestErrors(t *testing.T) {
	creds := peercred.TransportCredentials()
	tests := []struct {
		name    string
		run     func() error
		wantErr string
	}{
		{
			name: "server handshake on a pipe",
			run: func() error {
				a, b := net.Pipe()
				defer a.Close()
				defer b.Close()
				_, _, err := creds.ServerHandshake(a)
				return err
			},
			wantErr: "peercred: handshake: *net.pipe is not a unix socket connection",
		},
		{
			name: "server handshake on TCP",
			run: func() error {
				lis, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					return err
				}
				defer lis.Close()
				c, err := net.Dial("tcp", lis.Addr().String())
				if err != nil {
					return err
				}
				defer c.Close()
				_, _, err = creds.ServerHandshake(c)
				return err
			},
			wantErr: "not a unix socket connection",
		},
		{
			name: "client handshake",
			run: func() error {
				_, _, err := creds.ClientHandshake(context.Background(), "x", nil)
				return err
			},
			wantErr: "peercred: client handshake is not supported",
		},
		{
			name:    "zero AuthInfo",
			run:     peercred.AuthInfo{PID: int32(os.Getpid())}.StillAlive,
			wantErr: "does not come from a handshake",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %v, want %q", err, tt.wantErr)
			}
		})
	}
	if got := creds.Info().SecurityProtocol; got != "peercred" {
		t.Errorf("Info().SecurityProtocol = %q", got)
	}
	if _, ok := peercred.FromContext(context.Background()); ok {
		t.Error("FromContext(Background) reported ok")
	}
}
