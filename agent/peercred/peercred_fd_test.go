package peercred_test

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hallmarkid/hallmark/agent/peercred"
)

// Descriptor hygiene (no leak per connection, failed handshakes included),
// the start-time parser's fuzz target, and the benchmarks.

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// waitFDs waits for the count of open descriptors to come back to want.
func waitFDs(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := openFDs(t)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("open fds = %d, want %d (leak)", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestNoFDLeak(t *testing.T) {
	modes(t, func(t *testing.T) {
		sock, records := startServer(t, t.TempDir())

		// One call first, so that lazily opened descriptors exist already.
		cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		if err := check(t, cc); err != nil {
			t.Fatal(err)
		}
		next(t, records)
		cc.Close()
		time.Sleep(50 * time.Millisecond)
		base := openFDs(t)

		const n = 10000
		for i := range n {
			c, err := net.Dial("unix", sock)
			for errors.Is(err, unix.EAGAIN) { // accept backlog full
				time.Sleep(time.Millisecond)
				c, err = net.Dial("unix", sock)
			}
			if err != nil {
				t.Fatalf("dial %d: %v", i, err)
			}
			if i%2 == 0 {
				c.Write([]byte("GET / HTTP/1.1\r\n\r\n")) // not HTTP/2: the server hangs up
			}
			c.Close()
		}
		waitFDs(t, base)
	})
}

// TestNoFDLeakFailedHandshake repeats handshakes that fail after the peer's
// credentials were read: the peer has exited.
func TestNoFDLeakFailedHandshake(t *testing.T) {
	modes(t, func(t *testing.T) {
		sock := filepath.Join(t.TempDir(), "s.sock")
		lis, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer lis.Close()
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(self, "-test.run=^$", sock)
		cmd.Env = append(os.Environ(), helperEnv+"=connect-exit")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		c, err := lis.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()

		creds := peercred.TransportCredentials()
		base := openFDs(t)
		for range 10000 {
			_, _, err := creds.ServerHandshake(c)
			if err == nil || !strings.HasPrefix(err.Error(), "peercred: handshake: ") {
				t.Fatalf("handshake with an exited peer: error = %v", err)
			}
		}
		_, _, err = creds.ServerHandshake(c)
		t.Logf("handshake with an exited peer: %v", err)
		if got := openFDs(t); got != base {
			t.Fatalf("open fds = %d, want %d (leak)", got, base)
		}
	})
}

func FuzzParseStartTime(f *testing.F) {
	self, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(self)
	f.Add([]byte("1 (a) b) S 0 1 1 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 42 1 1 1\n"))
	f.Add([]byte("1 (x) S 0"))
	f.Add([]byte(")"))
	f.Add([]byte("1 (x) S 0 1 1 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 18446744073709551616 1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := peercred.ParseStartTime(b)
		if err != nil && v != 0 {
			t.Fatalf("value %d with error %v", v, err)
		}
	})
}

func BenchmarkServerHandshake(b *testing.B) {
	a, c, err := socketpair()
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	defer c.Close()
	creds := peercred.TransportCredentials()
	for b.Loop() {
		_, ai, err := creds.ServerHandshake(a)
		if err != nil {
			b.Fatal(err)
		}
		// Release the pidfd without closing the socket, as Close would.
		ai.(peercred.AuthInfo).Release()
	}
}

func BenchmarkStillAlive(b *testing.B) {
	a, c, err := socketpair()
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	conn, ai, err := peercred.TransportCredentials().ServerHandshake(a)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	info := ai.(peercred.AuthInfo)
	for b.Loop() {
		if err := info.StillAlive(); err != nil {
			b.Fatal(err)
		}
	}
}
