package fleet

import (
	"io"
	"net"
	"sync/atomic"
)

// Balancer is a loopback TCP balancer: it hands each new connection to the
// next backend in turn (round robin), skipping backends that refuse it,
// so a fleet spreads over an HA pair and fails over when one server
// stops.
type Balancer struct {
	l        net.Listener
	backends []string
	next     atomic.Uint64
}

// NewBalancer listens on a loopback port and balances over backends.
func NewBalancer(backends ...string) (*Balancer, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &Balancer{l: l, backends: backends}
	go b.serve()
	return b, nil
}

// Address returns the balancer's address.
func (b *Balancer) Address() string { return b.l.Addr().String() }

// Close stops accepting connections (open ones run to their end).
func (b *Balancer) Close() error { return b.l.Close() }

func (b *Balancer) serve() {
	for {
		c, err := b.l.Accept()
		if err != nil {
			return
		}
		go b.forward(c)
	}
}

func (b *Balancer) forward(c net.Conn) {
	defer c.Close()
	start := b.next.Add(1)
	for i := range len(b.backends) {
		up, err := net.Dial("tcp", b.backends[(int(start)+i)%len(b.backends)])
		if err != nil {
			continue
		}
		defer up.Close()
		done := make(chan struct{}, 2)
		go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
		go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
		// Either side closing (a server stopping, an agent reconnecting)
		// ends the pair.
		<-done
		c.Close()
		up.Close()
		<-done
		return
	}
}
