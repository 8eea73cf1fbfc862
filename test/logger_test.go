package test

import (
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/test/testenv"
)

// TestLoggerLevel: SPIRE's `logger get|set|reset` change the running
// server's level. The test server starts at debug, where a failed Node API
// TLS handshake is logged; at warn it is not; after reset it is again.
func TestLoggerLevel(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer()
	if out := srv.MustCLI("logger", "get"); !strings.Contains(out, "Logger Level : debug") || !strings.Contains(out, "Launch Level : debug") {
		t.Fatalf("logger get:\n%s", out)
	}
	handshakeLogged := func() int { return strings.Count(srv.Log(), "Node API TLS handshake failed") }
	badHandshake := func() {
		c, err := net.Dial("tcp", srv.Address)
		must(t, err)
		_, _ = c.Write([]byte("not TLS\r\n\r\n"))
		time.Sleep(100 * time.Millisecond)
		c.Close()
	}

	var l struct {
		Current string `json:"current_level"`
		Launch  string `json:"launch_level"`
	}
	must(t, json.Unmarshal([]byte(srv.MustCLI("logger", "set", "-level", "warn", "-output", "json")), &l))
	if l.Current != "WARN" || l.Launch != "DEBUG" {
		t.Fatalf("logger set -output json: %+v", l)
	}
	before := handshakeLogged()
	badHandshake()
	time.Sleep(300 * time.Millisecond)
	if n := handshakeLogged(); n != before {
		t.Fatalf("debug message logged at warn (%d -> %d)", before, n)
	}
	if out := srv.MustCLI("logger", "reset"); !strings.Contains(out, "Logger Level : debug") {
		t.Fatalf("logger reset:\n%s", out)
	}
	badHandshake()
	testenv.WaitFor(t, 5*time.Second, "the debug message after reset", func() bool { return handshakeLogged() > before })
	if out, err := srv.CLI("logger", "set", "-level", "loud"); err == nil || !strings.Contains(out, "unknown log level") {
		t.Fatalf("logger set -level loud: err=%v\n%s", err, out)
	}
}
