package admission

import (
	"crypto/tls"
	"testing"
)

// TestWithH2ReusesTheCopy: a connection keeps the configuration its
// handshake used for its whole life, so withH2 must not clone the one
// GetConfigForClient returns on every handshake (≈ 1 KiB held per
// connection, a thousand agents connected) while that one is unchanged;
// when it changes (a new trust bundle), the next handshake gets a copy of
// the new one.
func TestWithH2ReusesTheCopy(t *testing.T) {
	cur := &tls.Config{ServerName: "first"}
	c := withH2(&tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return cur, nil }})
	hello := &tls.ClientHelloInfo{}
	get := func() *tls.Config {
		t.Helper()
		cc, err := c.GetConfigForClient(hello)
		if err != nil {
			t.Fatal(err)
		}
		if len(cc.NextProtos) != 1 || cc.NextProtos[0] != "h2" {
			t.Fatalf("NextProtos %v; want [h2]", cc.NextProtos)
		}
		return cc
	}
	a, b := get(), get()
	if a != b {
		t.Fatal("a copy per handshake while the configuration is unchanged")
	}
	if a == cur || len(cur.NextProtos) != 0 {
		t.Fatal("the caller's configuration was modified instead of copied")
	}
	cur = &tls.Config{ServerName: "second"}
	if n := get(); n == a || n.ServerName != "second" {
		t.Fatalf("after a change: got %q (same copy: %v); want a copy of the new configuration", n.ServerName, n == a)
	}
	if allocs := testing.AllocsPerRun(100, func() { get() }); allocs > 0 {
		t.Errorf("%.0f allocations per handshake; want 0", allocs)
	}
}
