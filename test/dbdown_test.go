package test

import (
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/internal/pgtest"
	"github.com/hallmarkid/hallmark/test/testenv"
)

// pgProxy is a loopback TCP proxy in front of PostgreSQL that can be cut
// (every connection closed, new ones refused) and restored on the same
// port: a database outage for one server without stopping the cluster
// other tests share.
type pgProxy struct {
	t      *testing.T
	addr   string
	target string

	mu    sync.Mutex // guards l and conns
	l     net.Listener
	conns map[net.Conn]struct{}
}

func startPGProxy(t *testing.T, target string) *pgProxy {
	p := &pgProxy{t: t, target: target, conns: map[net.Conn]struct{}{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = l.Addr().String()
	p.serve(l)
	t.Cleanup(p.cut)
	return p
}

func (p *pgProxy) serve(l net.Listener) {
	p.mu.Lock()
	p.l = l
	p.mu.Unlock()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go p.forward(c)
		}
	}()
}

func (p *pgProxy) forward(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.l == nil { // cut meanwhile
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	p.mu.Unlock()
	go func() { _, _ = io.Copy(up, c); up.Close() }()
	_, _ = io.Copy(c, up)
	c.Close()
}

// cut closes the listener and every proxied connection.
func (p *pgProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.l != nil {
		p.l.Close()
		p.l = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// restore listens again on the same address.
func (p *pgProxy) restore() {
	l, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.serve(l)
}

// THREATS: "Database down → agents keep serving unexpired SVIDs; server
// keeps answering from cache for a bounded time." With PostgreSQL cut off,
// the server keeps signing rotations for its agent from the agent record
// it last read (datastore_outage_grace), the workload's SVID keeps
// rotating, and when the database is back, new entries flow again.
func TestDatastoreOutageKeepsRotating(t *testing.T) {
	conn := pgtest.Start(t)
	u, err := url.Parse(conn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startPGProxy(t, u.Host)
	u.Host = proxy.addr
	ds := `datastore {
  type              = "postgres"
  connection_string = "` + u.String() + `"
}`
	env := testenv.New(t)
	srv := env.StartServer(testenv.WithHCL(ds), testenv.WithServerHCL(`datastore_outage_grace = "2m"`))
	ag := env.StartAgent(srv, srv.Token())
	const rotID = "spiffe://example.org/outage/rotating"
	srv.CreateEntry(rotID, ag.ID(), "-selector", uidSelector(), "-x509SVIDTTL", "4")
	first := waitForSVID(t, ag.Addr(), rotID).DefaultSVID().Certificates[0]

	proxy.cut()
	// A 4 s SVID is renewed at half-life: over 7 s of outage the workload
	// must see at least two new certificates, all signed by the server
	// that cannot reach its database.
	serials := map[string]bool{first.SerialNumber.String(): true}
	deadline := time.Now().Add(7 * time.Second)
	for time.Now().Before(deadline) {
		c := waitForSVID(t, ag.Addr(), rotID)
		leaf := c.DefaultSVID().Certificates[0]
		if time.Now().After(leaf.NotAfter) {
			t.Fatalf("workload served an expired SVID during the outage (not after %s)", leaf.NotAfter)
		}
		serials[leaf.SerialNumber.String()] = true
		time.Sleep(250 * time.Millisecond)
	}
	if len(serials) < 3 {
		t.Fatalf("during the database outage the SVID rotated %d times, want ≥ 2\nserver log:\n%s", len(serials)-1, srv.Log())
	}
	if _, err := srv.CLI("entry", "create", "-spiffeID", "spiffe://example.org/outage/refused", "-parentID", ag.ID(),
		"-selector", uidSelector()); err == nil {
		t.Fatal("an entry was created while the database was unreachable")
	}

	proxy.restore()
	const after = "spiffe://example.org/outage/after"
	testenv.WaitFor(t, 30*time.Second, "entry create after the database came back", func() bool {
		_, err := srv.CLI("entry", "create", "-spiffeID", after, "-parentID", ag.ID(), "-selector", uidSelector())
		return err == nil
	})
	waitForSVID(t, ag.Addr(), after)
}
