package sdnotify_test

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/internal/sdnotify"
)

func TestNotify(t *testing.T) {
	tests := []struct {
		name    string
		socket  func(t *testing.T) (string, *net.UnixConn)
		wantErr string
	}{
		{name: "path", socket: func(t *testing.T) (string, *net.UnixConn) {
			p := filepath.Join(t.TempDir(), "notify")
			return p, listen(t, p)
		}},
		{name: "abstract", socket: func(t *testing.T) (string, *net.UnixConn) {
			p := "@hallmark-sdnotify-test-" + strings.ReplaceAll(t.Name(), "/", "-")
			return p, listen(t, p)
		}},
		{name: "unset", socket: func(*testing.T) (string, *net.UnixConn) { return "", nil }},
		{name: "vsock unsupported", socket: func(*testing.T) (string, *net.UnixConn) { return "vsock:2:1", nil }, wantErr: "only unix socket paths"},
		{name: "nobody listening", socket: func(t *testing.T) (string, *net.UnixConn) { return filepath.Join(t.TempDir(), "none"), nil }, wantErr: "sdnotify: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, l := tt.socket(t)
			t.Setenv("NOTIFY_SOCKET", addr)
			err := sdnotify.Ready()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if l == nil {
				return
			}
			buf := make([]byte, 64)
			l.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := l.Read(buf)
			if err != nil || string(buf[:n]) != "READY=1" {
				t.Fatalf("got %q, %v; want READY=1", buf[:n], err)
			}
		})
	}
}

func listen(t *testing.T, addr string) *net.UnixConn {
	t.Helper()
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}
