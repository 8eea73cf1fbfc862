package admission

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Config configures a Gate.
type Config struct {
	Limits Limits
	// TLS is the server's TLS configuration. Client certificates must be
	// optional and verified when given (tls.VerifyClientCertIfGiven);
	// "h2" is added to NextProtos.
	TLS *tls.Config
	// Authenticated reports whether a client's verified certificate
	// chains prove an agent (see AgentIn). Such connections go to the
	// authenticated server; every other one is unauthenticated.
	Authenticated func(verifiedChains [][]*x509.Certificate) bool
	// AttestMethod is the full gRPC method name ("/pkg.Service/Method")
	// served without authentication and bounded by the attestation limits.
	AttestMethod string
	Log          *slog.Logger
	// ReportInterval is how often refusals are summarised in the log;
	// 0 means a minute.
	ReportInterval time.Duration
	// Refused, when set, is called with the limit's name (as logged:
	// "connections_per_source", "attestation_rate", ...) at each refusal
	// and failed handshake, for hallmark_node_api_refusals_total.
	Refused func(limit string)
}

// AgentIn returns an Authenticated function accepting chains whose leaf
// is an X509-SVID in td's agent namespace (spiffe://<td>/agent/...).
func AgentIn(td spiffeid.TrustDomain) func([][]*x509.Certificate) bool {
	return func(chains [][]*x509.Certificate) bool {
		if len(chains) == 0 || len(chains[0]) == 0 {
			return false
		}
		id, err := x509svid.IDFromCert(chains[0][0])
		return err == nil && id.MemberOf(td) && strings.HasPrefix(id.Path(), "/agent/")
	}
}

// Gate admits connections and calls to the Node API; see the package doc.
type Gate struct {
	cfg      Config
	tls      *tls.Config
	buckets  *buckets
	inflight chan struct{} // a token per attestation being served
	waiting  atomic.Int64  // attestations waiting for a token

	mu         sync.Mutex // guards the fields that follow
	handshakes int        // TLS handshakes in progress
	anon       int        // established connections without an agent SVID
	perSource  map[Source]int
	root       net.Listener
	subs       []*subListener

	// Busy refusals' retry window (see retryWindow): the mean duration
	// of a TLS handshake lately, and the connections refused in the
	// current and the previous second.
	handshakeAvg      time.Duration
	shedNow, shedPrev int
	shedSince         time.Time

	refused [numReasons]atomic.Int64 // since the last report
	done    chan struct{}
	closing sync.Once
}

// reason is why something was refused.
type reason int

const (
	reasonConnsPerSource reason = iota
	reasonConns
	reasonHandshakes
	reasonHandshakeFailed
	reasonRate
	reasonInflight
	reasonMethod
	numReasons
)

var reasonNames = [numReasons]string{
	"connections_per_source", "connections", "handshakes_in_progress", "handshake_failed",
	"attestation_rate", "attestations_in_flight", "unauthenticated_method",
}

// New returns a gate; call Listen to start it.
func New(cfg Config) (*Gate, error) {
	if err := cfg.Limits.Validate(); err != nil {
		return nil, err
	}
	if cfg.TLS == nil || cfg.Authenticated == nil || cfg.AttestMethod == "" {
		return nil, errors.New("admission: TLS, Authenticated and AttestMethod are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.ReportInterval <= 0 {
		cfg.ReportInterval = time.Minute
	}
	return &Gate{
		cfg:       cfg,
		tls:       withH2(cfg.TLS),
		buckets:   newBuckets(cfg.Limits.AttestationRatePerSource, cfg.Limits.AttestationBurstPerSource),
		inflight:  make(chan struct{}, cfg.Limits.MaxInflightAttestations),
		perSource: make(map[Source]int),
		done:      make(chan struct{}),
	}, nil
}

// withH2 returns a copy of c offering ALPN "h2", also from the
// configurations its GetConfigForClient returns. A connection holds the
// configuration of its handshake for its whole life, so the copy of the
// one GetConfigForClient returns is made once per configuration (it
// returns the same one while the trust bundle is unchanged), not once per
// handshake.
func withH2(c *tls.Config) *tls.Config {
	c = c.Clone()
	c.NextProtos = []string{"h2"}
	if get := c.GetConfigForClient; get != nil {
		type copied struct{ from, to *tls.Config }
		var last atomic.Pointer[copied]
		c.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			cc, err := get(hello)
			if err != nil || cc == nil {
				return cc, err
			}
			if l := last.Load(); l != nil && l.from == cc {
				return l.to, nil
			}
			h2 := cc.Clone()
			h2.NextProtos = []string{"h2"}
			last.Store(&copied{from: cc, to: h2})
			return h2, nil
		}
	}
	return c
}

// Listeners are the two sides of a gate's TCP listener: serve each with
// its own gRPC server (AuthenticatedOptions, UnauthenticatedOptions).
type Listeners struct {
	Authenticated   net.Listener
	Unauthenticated net.Listener
}

// Listen starts accepting connections on l, which the gate now owns.
func (g *Gate) Listen(l net.Listener) Listeners {
	auth, anon := newSubListener(l.Addr()), newSubListener(l.Addr())
	g.mu.Lock()
	g.root, g.subs = l, []*subListener{auth, anon}
	g.mu.Unlock()
	go g.accept(l, auth, anon)
	go g.report()
	return Listeners{Authenticated: auth, Unauthenticated: anon}
}

// Close stops accepting and closes the listeners; connections already
// handed to a gRPC server are its to close.
func (g *Gate) Close() error {
	var err error
	g.closing.Do(func() {
		close(g.done)
		g.mu.Lock()
		root, subs := g.root, g.subs
		g.mu.Unlock()
		if root != nil {
			err = root.Close()
		}
		for _, s := range subs {
			s.Close()
		}
	})
	return err
}

func (g *Gate) accept(l net.Listener, auth, anon *subListener) {
	backoff := 5 * time.Millisecond
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				auth.Close()
				anon.Close()
				return
			}
			g.cfg.Log.Warn("Node API accept failed; retrying", "error", err, "retry_in", backoff)
			select {
			case <-g.done:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		src, ok := SourceOf(c.RemoteAddr())
		if !ok {
			c.Close()
			continue
		}
		if r, ok := g.reserveHandshake(src); !ok {
			g.refuse(r, src)
			g.refuseBusy(c) // before any TLS work
			continue
		}
		go g.handshake(c, src, auth, anon, time.Now())
	}
}

// reserveHandshake counts a new connection from src, or says why not.
func (g *Gate) reserveHandshake(src Source) (reason, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.handshakes >= g.cfg.Limits.MaxConns:
		return reasonHandshakes, false
	case g.perSource[src] >= g.cfg.Limits.MaxConnsPerSource:
		return reasonConnsPerSource, false
	}
	g.handshakes++
	g.perSource[src]++
	return 0, true
}

// forgetHandshake takes a connection whose handshake failed, or that
// proved an agent, out of the unauthenticated books.
func (g *Gate) forgetHandshake(src Source) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.handshakes--
	g.dropSourceLocked(src)
}

// promote moves a connection without an agent SVID from the handshake
// count to the unauthenticated connections, and reports whether there was
// room (if not, it is out of the books).
func (g *Gate) promote(src Source) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.handshakes--
	if g.anon < g.cfg.Limits.MaxConns {
		g.anon++
		return true
	}
	g.dropSourceLocked(src)
	return false
}

// release forgets an unauthenticated connection that closed.
func (g *Gate) release(src Source) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.anon--
	g.dropSourceLocked(src)
}

func (g *Gate) dropSourceLocked(src Source) {
	if n := g.perSource[src] - 1; n > 0 {
		g.perSource[src] = n
	} else {
		delete(g.perSource, src)
	}
}

func (g *Gate) handshake(raw net.Conn, src Source, auth, anon *subListener, accepted time.Time) {
	timeout := g.cfg.Limits.FirstMessageTimeout
	_ = raw.SetDeadline(time.Now().Add(timeout))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tc := tls.Server(raw, g.tls)
	err := tc.HandshakeContext(ctx)
	var state tls.ConnectionState
	if err == nil {
		state = tc.ConnectionState()
		if state.NegotiatedProtocol != "h2" {
			err = errors.New("client did not negotiate ALPN h2")
		}
	}
	if err != nil {
		g.forgetHandshake(src)
		g.refuse(reasonHandshakeFailed, src)
		g.cfg.Log.Debug("Node API TLS handshake failed", "source", src.String(), "error", err)
		tc.Close()
		return
	}
	_ = raw.SetDeadline(time.Time{})
	g.handshook(time.Since(accepted))
	if g.cfg.Authenticated(state.VerifiedChains) {
		g.forgetHandshake(src)
		auth.deliver(&gatedConn{Conn: tc, state: state})
		return
	}
	if !g.promote(src) {
		g.refuse(reasonConns, src)
		tc.Close()
		return
	}
	c := &gatedConn{Conn: tc, state: state}
	c.release = func() { g.release(src) }
	anon.deliver(c)
}

// refuse counts a refusal, logging the first of each kind per report
// interval at once so that the start of a flood is visible.
func (g *Gate) refuse(r reason, src Source) {
	if g.cfg.Refused != nil {
		g.cfg.Refused(reasonNames[r])
	}
	if g.refused[r].Add(1) == 1 && r != reasonHandshakeFailed {
		g.cfg.Log.Warn("Node API limit reached; refusing unauthenticated work", "limit", reasonNames[r], "source", src.String())
	}
}

func (g *Gate) report() {
	t := time.NewTicker(g.cfg.ReportInterval)
	defer t.Stop()
	for {
		select {
		case <-g.done:
			return
		case <-t.C:
		}
		// Failed handshakes alone (port scans, TCP health checks of a
		// load balancer) are no news; they are counted with refusals.
		var attrs []any
		failed := g.refused[reasonHandshakeFailed].Swap(0)
		for r := range numReasons {
			if n := g.refused[r].Swap(0); n > 0 {
				attrs = append(attrs, reasonNames[r], n)
			}
		}
		if len(attrs) > 0 {
			attrs = append(attrs, reasonNames[reasonHandshakeFailed], failed)
			g.mu.Lock()
			attrs = append(attrs, "unauthenticated_connections", g.anon, "handshakes_in_progress", g.handshakes,
				"attestations_in_flight", len(g.inflight), "interval", g.cfg.ReportInterval)
			g.mu.Unlock()
			g.cfg.Log.Warn("Node API refusals", attrs...)
		}
	}
}

// Stats is a snapshot of what the gate holds.
type Stats struct {
	Handshakes, Unauthenticated, AttestationsInFlight, Sources int
	// AttestationsWaiting counts attestations waiting for an in-flight
	// slot (InflightWait).
	AttestationsWaiting int
}

// Stats returns what the gate holds now.
func (g *Gate) Stats() Stats {
	g.mu.Lock()
	defer g.mu.Unlock()
	return Stats{Handshakes: g.handshakes, Unauthenticated: g.anon, AttestationsInFlight: len(g.inflight), Sources: len(g.perSource),
		AttestationsWaiting: int(g.waiting.Load())}
}

// gatedConn is a connection whose TLS handshake the gate completed.
type gatedConn struct {
	*tls.Conn
	state   tls.ConnectionState
	release func() // nil for authenticated connections
	once    sync.Once
}

func (c *gatedConn) Close() error {
	err := c.Conn.Close()
	if c.release != nil {
		c.once.Do(c.release)
	}
	return err
}

// subListener hands the gate's connections of one kind to a gRPC server.
type subListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newSubListener(addr net.Addr) *subListener {
	return &subListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *subListener) deliver(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *subListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, fmt.Errorf("admission: %w", net.ErrClosed)
	}
}

func (l *subListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *subListener) Addr() net.Addr { return l.addr }
