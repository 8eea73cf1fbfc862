package testenv

import (
	"io"
	"net"
	"sync"
	"testing"
)

// LB is a loopback TCP load balancer in front of HA servers, as agents
// would find in production: each new connection goes to the first backend
// that accepts it, so killing a server moves its agents to the others.
type LB struct {
	Address string

	mu       sync.Mutex // guards backends
	backends []string
}

// StartLB starts a load balancer over the servers' addresses.
func (e *Env) StartLB(servers ...*Server) *LB {
	e.t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	lb := &LB{Address: l.Addr().String()}
	for _, s := range servers {
		lb.backends = append(lb.backends, s.Address)
	}
	e.t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go lb.forward(e.t, c)
		}
	}()
	return lb
}

func (lb *LB) forward(t testing.TB, c net.Conn) {
	defer c.Close()
	lb.mu.Lock()
	backends := append([]string(nil), lb.backends...)
	lb.mu.Unlock()
	for _, b := range backends {
		up, err := net.Dial("tcp", b)
		if err != nil {
			continue
		}
		defer up.Close()
		done := make(chan struct{}, 2)
		go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
		go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
		<-done
		return
	}
}
