package test

import (
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/test/testenv"
)

// TestSystemdNotify: started as a systemd Type=notify service would start
// them (NOTIFY_SOCKET naming a unixgram socket), both daemons send READY=1
// once, and only when they serve: the server's admin API and the agent's
// Workload API answer as soon as it arrives. On SIGTERM they send
// STOPPING=1.
func TestSystemdNotify(t *testing.T) {
	env := testenv.New(t)
	listen := func(name string) (string, *net.UnixConn) {
		p := filepath.Join(env.Dir, name)
		l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: p, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return p, l
	}
	read := func(l *net.UnixConn, d time.Duration) (string, error) {
		buf := make([]byte, 256)
		l.SetReadDeadline(time.Now().Add(d))
		n, err := l.Read(buf)
		return string(buf[:n]), err
	}

	srvSock, srvL := listen("srv.notify")
	srv := env.StartServer(testenv.WithServerEnv("NOTIFY_SOCKET=" + srvSock))
	if msg, err := read(srvL, 20*time.Second); err != nil || msg != "READY=1" {
		t.Fatalf("server notification %q, %v; want READY=1", msg, err)
	}
	token := srv.Token()

	agSock, agL := listen("ag.notify")
	ag := env.StartAgent(srv, token, testenv.NoWait(), testenv.WithAgentEnv("NOTIFY_SOCKET="+agSock))
	msg, err := read(agL, 30*time.Second)
	if err != nil || msg != "READY=1" {
		t.Fatalf("agent notification %q, %v; want READY=1\n%s", msg, err, ag.Log())
	}
	// Ready means serving: the health check answers at once.
	if err := ag.Healthy(); err != nil {
		t.Fatalf("agent notified READY=1 but is not healthy: %v", err)
	}
	// Once only.
	if msg, err := read(agL, time.Second); err == nil {
		t.Fatalf("second agent notification %q", msg)
	}
	if msg, err := read(srvL, 100*time.Millisecond); err == nil {
		t.Fatalf("second server notification %q", msg)
	}

	ag.Stop()
	if msg, err := read(agL, 5*time.Second); err != nil || msg != "STOPPING=1" {
		t.Fatalf("agent at SIGTERM: %q, %v; want STOPPING=1", msg, err)
	}
}
