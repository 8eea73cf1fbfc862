// Package server wires the Hallmark server together: configuration,
// datastore, CA, entry cache, node attestors, the Node API on TCP (TLS) and
// the Admin API on an owner-only unix socket.
//
// Wiring lives here and in cmd/; the packages it assembles know nothing of
// each other beyond the small interfaces they declare.
package server

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/attestors"
	"github.com/hallmarkid/hallmark/internal/hclconf"
	"github.com/hallmarkid/hallmark/internal/pidlock"
	"github.com/hallmarkid/hallmark/internal/sdnotify"
	"github.com/hallmarkid/hallmark/internal/telemetry"
	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/adminapi"
	"github.com/hallmarkid/hallmark/server/audit"
	"github.com/hallmarkid/hallmark/server/bundlepub"
	"github.com/hallmarkid/hallmark/server/ca"
	"github.com/hallmarkid/hallmark/server/config"
	"github.com/hallmarkid/hallmark/server/datastore"
	"github.com/hallmarkid/hallmark/server/datastore/postgres"
	"github.com/hallmarkid/hallmark/server/datastore/sqlite"
	"github.com/hallmarkid/hallmark/server/entrycache"
	"github.com/hallmarkid/hallmark/server/federation"
	"github.com/hallmarkid/hallmark/server/jwtsigner"
	"github.com/hallmarkid/hallmark/server/nodeapi"
	"github.com/hallmarkid/hallmark/server/oidc"
)

// Server is a running Hallmark server.
type Server struct {
	cfg      *config.Config
	log      *slog.Logger
	store    datastore.Store
	ca       *ca.CA
	entries  *entrycache.Cache
	node     *nodeapi.Server
	admin    *adminapi.Server
	serverID spiffeid.ID
	audit    *audit.Log
	jwt      *jwtsigner.Signer
	metrics  *telemetry.Metrics
	tele     telemetry.HCLConfig
	// cursor is the store revision the cache has caught up to through the
	// change feed; only the catch-up goroutine touches it after New.
	cursor int64
	fed    *federation.Fetcher  // federated and operator-set (static) bundles
	fedEP  *federation.Endpoint // nil without a bundle endpoint
	oidc   *oidc.Endpoint       // nil without an oidc block
	pub    *bundlepub.Publisher // nil without bundle_publisher blocks

	agentCountMu sync.Mutex // guards agentCount and agentCountAt
	agentCount   int        // attested agents as of agentCountAt
	agentCountAt time.Time

	certMu sync.Mutex // guards cert
	cert   *tls.Certificate

	lock *pidlock.Lock // data_dir, held from New until Run returns
}

// New builds a server from cfg: opens the datastore, loads or creates the
// CA and loads the entries. Nothing listens until Run.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger, opts ...Option) (_ *Server, err error) {
	if err := Validate(cfg, log); err != nil {
		return nil, err
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	s := &Server{cfg: cfg, log: log, serverID: nodeapi.ServerID(cfg.TrustDomain)}
	if s.lock, err = lockDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.lock.Release()
		}
	}()
	switch cfg.Datastore.Type {
	case config.DatastoreSQLite:
		s.store, err = sqlite.Open(ctx, cfg.Datastore.Path, log.With("subsystem", "datastore"))
	case config.DatastorePostgres:
		s.store, err = postgres.Open(ctx, cfg.Datastore.ConnectionString, log.With("subsystem", "datastore"))
	default:
		err = fmt.Errorf("datastore type %q is not supported by this build", cfg.Datastore.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("server: open datastore: %w", err)
	}
	caCfg := ca.Config{
		TrustDomain: cfg.TrustDomain, KeyType: string(cfg.CAKeyType), TTL: cfg.CATTL,
		Dir: filepath.Join(cfg.DataDir, "ca"), Log: log.With("subsystem", "ca"),
	}
	if b := cfg.UpstreamAuthority; b != nil {
		up, err := ca.DecodeUpstreamHCL(*b)
		if err != nil {
			s.store.Close()
			return nil, fmt.Errorf("server: %w", err)
		}
		up.Apply(&caCfg)
	}
	if cfg.Datastore.Type == config.DatastorePostgres {
		// Servers sharing one database agree on the CA authorities.
		caCfg.Shared, caCfg.SharedNotFound = s.store, datastore.ErrNotFound
	}
	s.ca, err = ca.New(caCfg)
	if err != nil {
		s.store.Close()
		return nil, fmt.Errorf("server: CA: %w", err)
	}
	jwtCfg := jwtsigner.Config{
		TrustDomain: cfg.TrustDomain, Dir: filepath.Join(cfg.DataDir, "jwt"), Log: log.With("subsystem", "jwt"),
		Algorithm: cfg.JWTKeyType.JWTAlgorithm(), KeyTTL: cfg.JWTKeyTTL, DefaultTTL: cfg.DefaultJWTSVIDTTL, Issuer: cfg.JWTIssuer,
	}
	if cfg.Datastore.Type == config.DatastorePostgres {
		// Servers sharing one database sign with the same JWT keys.
		jwtCfg.Shared, jwtCfg.SharedNotFound = s.store, datastore.ErrNotFound
	}
	s.jwt, err = jwtsigner.New(jwtCfg)
	if err != nil {
		s.store.Close()
		return nil, fmt.Errorf("server: JWT signer: %w", err)
	}
	if o := cfg.OIDC; o != nil {
		s.oidc, err = oidc.New(oidc.Config{Issuer: cfg.JWTIssuer, Keys: s.jwt.JWTAuthorities, Address: o.ListenAddress,
			Domains: o.Domains, CertFile: o.CertFile, KeyFile: o.KeyFile, Log: log.With("subsystem", "oidc")})
		if err != nil {
			s.store.Close()
			return nil, fmt.Errorf("server: %w", err)
		}
	}
	if outs, err := bundlepub.Outputs(ctx, cfg.BundlePublishers); err != nil {
		s.store.Close()
		return nil, fmt.Errorf("server: %w", err)
	} else if len(outs) > 0 {
		pc := bundlepub.Config{TrustDomain: cfg.TrustDomain, Bundle: s.ca.Bundle, Changed: s.ca.BundleChanged,
			Outputs: outs, Log: log.With("subsystem", "bundle_publisher")}
		if cfg.Datastore.Type == config.DatastorePostgres {
			pc.Sync = s.ca.Rotate // adopt what the other servers agreed on first
		}
		s.pub = bundlepub.New(pc)
	}
	s.entries = entrycache.New(s.serverID)
	entries, rev, err := s.store.ListEntries(ctx)
	if err != nil {
		s.store.Close()
		return nil, fmt.Errorf("server: load entries: %w", err)
	}
	s.entries.Reset(entries, rev)
	s.cursor = rev

	verifiers, err := s.verifiers()
	if err != nil {
		s.store.Close()
		return nil, err
	}
	if err := s.initOps(verifiers); err != nil {
		s.store.Close()
		return nil, err
	}
	if err := s.initFederation(); err != nil {
		s.close()
		return nil, err
	}
	var fed nodeapi.FederationSource // a nil interface, never a typed nil *federation.Fetcher
	if s.fed != nil {
		fed = s.fed
	}
	s.node, err = nodeapi.New(nodeapi.Config{
		TrustDomain: cfg.TrustDomain, Signer: s.ca, Agents: s.store, Entries: s.entries, Verifiers: verifiers,
		AgentSVIDTTL: cfg.AgentSVIDTTL, DefaultSVIDTTL: cfg.DefaultX509SVIDTTL,
		AttestTimeout: cfg.NodeAPI.AttestationTimeout, FirstMessageTimeout: cfg.NodeAPI.FirstMessageTimeout,
		Audit: s.audit, Metrics: s.metrics, Log: log.With("subsystem", "node_api"),
		JWTSigner: s.jwt, BundleChanged: s.ca.BundleChanged, Federation: fed, OutageGrace: cfg.DatastoreOutageGrace,
	})
	if err != nil {
		s.close()
		return nil, fmt.Errorf("server: %w", err)
	}
	s.admin = adminapi.New(adminapi.Config{
		TrustDomain: cfg.TrustDomain, ServerID: s.serverID, Store: s.store, Entries: s.entries,
		Evictor: s.node, Bundle: s.ca.Bundle, Ready: s.Ready, Audit: s.audit, Log: log.With("subsystem", "admin_api"),
		Federation: s.fed, Authorities: adminapi.Authorities{X509: s.ca, JWT: s.jwt},
		X509Minter: s.ca, JWTMinter: s.jwt, DefaultX509SVIDTTL: cfg.DefaultX509SVIDTTL,
		LogLevel: o.logLevel, LaunchLogLevel: o.launchLevel,
	})
	log.Info("Server initialised", "trust_domain", cfg.TrustDomain.Name(), "entries", len(entries),
		"datastore", cfg.Datastore.Type, "node_attestors", attestorTypes(verifiers))
	return s, nil
}

func attestorTypes(vs []attestors.NodeVerifier) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.Type()
	}
	return out
}

// initOps sets up the audit log (default <data_dir>/audit.log) and metrics.
func (s *Server) initOps(verifiers []attestors.NodeVerifier) error {
	ac := audit.HCLConfig{Path: filepath.Join(s.cfg.DataDir, "audit.log")}
	if b := s.cfg.Audit; b != nil {
		ac = audit.HCLConfig{}
		if err := hclconf.DecodeBlock(*b, &ac); err != nil {
			return fmt.Errorf("server: %w", err)
		}
	}
	cfg, err := ac.Config()
	if err != nil {
		return fmt.Errorf("server: audit: %w", err)
	}
	cfg.Log = s.log.With("subsystem", "audit")
	if s.audit, err = audit.New(cfg); err != nil {
		return fmt.Errorf("server: audit: %w", err)
	}
	if b := s.cfg.Telemetry; b != nil {
		if err := hclconf.DecodeBlock(*b, &s.tele); err != nil {
			return fmt.Errorf("server: %w", err)
		}
		if err := s.tele.Validate(); err != nil {
			return fmt.Errorf("server: telemetry (%s): %w", b.Pos(), err)
		}
	}
	s.metrics = telemetry.New(telemetry.Config{Daemon: telemetry.Server, Attestors: attestorTypes(verifiers)})
	if o, ok := s.store.(datastore.OpObserver); ok {
		o.ObserveOps(s.metrics.ObserveDatastore)
	}
	s.metrics.AttestedAgents(s.attestedAgents)
	s.metrics.AuthorityExpiry("x509", func() map[string]time.Time {
		out := make(map[string]time.Time)
		for _, a := range s.ca.Authorities() {
			if a.Status != ca.StatusOld {
				out[a.Status] = a.Certificate.NotAfter
			}
		}
		return out
	})
	s.metrics.AuthorityExpiry(telemetry.KindJWT, func() map[string]time.Time {
		out := make(map[string]time.Time)
		for _, k := range s.jwt.Keys() {
			if k.Status != jwtsigner.StatusOld {
				out[k.Status] = k.NotAfter
			}
		}
		return out
	})
	s.metrics.AuditStats(func() (uint64, uint64, uint64) {
		st := s.audit.Stats()
		return st.Written, st.Failed, st.Dropped
	})
	return nil
}

// initFederation builds the bundle endpoint and the federated bundle
// fetcher from the federation block.
func (s *Server) initFederation() error {
	var fs federation.Settings
	if s.cfg.Federation != nil {
		var diags hcl.Diagnostics
		fs, diags = federation.ParseHCL(s.cfg.Federation.Body, s.cfg.TrustDomain)
		if err := hclconf.DiagError("config", diags); err != nil {
			return err
		}
	}
	flog := s.log.With("subsystem", "federation")
	// The fetcher always exists: without federates_with blocks it still
	// holds the bundles an operator sets with `bundle set`.
	var err error
	s.fed, err = federation.NewFetcher(federation.FetcherConfig{
		TrustDomain: s.cfg.TrustDomain, Relationships: fs.Relationships, Store: s.store, Log: flog,
		OnRefresh: func(td spiffeid.TrustDomain, at time.Time, err error) {
			s.metrics.FederationRefreshed(td.Name(), at, err)
		},
	})
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	if fs.Endpoint != nil {
		ec := fs.Endpoint.Config()
		ec.TrustDomain, ec.GetCertificate, ec.Log = s.cfg.TrustDomain, s.serverCert, s.log.With("subsystem", "bundle_endpoint")
		ec.Bundle = federation.NewSequencer(s.store, flog).Source(s.ca.Bundle, s.jwt.JWTAuthorities)
		ec.JWTAuthorities = s.jwt.JWTAuthorities
		if s.fedEP, err = federation.NewEndpoint(ec); err != nil {
			return fmt.Errorf("server: %w", err)
		}
	}
	return nil
}

func (s *Server) close() {
	if s.audit != nil {
		s.audit.Close()
	}
	s.store.Close()
	s.lock.Release()
}

// Ready reports whether the datastore and CA are usable.
func (s *Server) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		return fmt.Errorf("datastore: %w", err)
	}
	if time.Now().After(s.ca.Certificate().NotAfter) {
		return errors.New("CA certificate expired")
	}
	return nil
}

// Run serves until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	defer s.close()
	if _, err := s.serverCert(); err != nil {
		return err
	}
	tcp, err := net.Listen("tcp", s.cfg.BindAddr())
	if err != nil {
		return fmt.Errorf("server: listen: %w", err)
	}
	adminL, err := listenAdmin(s.cfg.SocketPath)
	if err != nil {
		tcp.Close()
		return err
	}

	// The Node API: agents with their SVID on one gRPC server, everyone
	// else (attestation) on a tightly bounded one (server/admission).
	gate, err := s.nodeGate()
	if err != nil {
		tcp.Close()
		adminL.Close()
		return err
	}
	nodeL := gate.Listen(tcp)
	defer gate.Close()
	nodeSrv := grpc.NewServer(append(append(gate.AuthenticatedOptions(),
		grpc.ChainUnaryInterceptor(audit.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(audit.StreamServerInterceptor())), s.metrics.ServerOptions()...)...)
	attestSrv := grpc.NewServer(append(append(gate.UnauthenticatedOptions(),
		grpc.ChainUnaryInterceptor(audit.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(audit.StreamServerInterceptor())), s.metrics.ServerOptions()...)...)
	apiv1.RegisterNodeServer(nodeSrv, s.node)
	apiv1.RegisterNodeServer(attestSrv, s.node)
	adminSrv := grpc.NewServer(append([]grpc.ServerOption{grpc.MaxRecvMsgSize(256 << 20),
		grpc.ChainUnaryInterceptor(audit.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(audit.StreamServerInterceptor())}, s.metrics.ServerOptions()...)...)
	apiv1.RegisterAdminServer(adminSrv, s.admin)

	errCh := make(chan error, 4)
	go func() { errCh <- nodeSrv.Serve(nodeL.Authenticated) }()
	go func() { errCh <- attestSrv.Serve(nodeL.Unauthenticated) }()
	go func() { errCh <- adminSrv.Serve(adminL) }()
	if s.fed != nil {
		go func() { _ = s.fed.Run(ctx) }()
	}
	if s.fedEP != nil {
		go func() {
			if err := s.fedEP.ListenAndServe(ctx); err != nil {
				errCh <- fmt.Errorf("bundle endpoint: %w", err)
			}
		}()
	}
	go s.housekeeping(ctx)
	go s.ca.Run(ctx)
	if s.pub != nil {
		go s.pub.Run(ctx)
	}
	go s.jwt.Run(ctx)
	if s.oidc != nil {
		go func() {
			if err := s.oidc.ListenAndServe(ctx); err != nil {
				select {
				case errCh <- fmt.Errorf("OIDC discovery endpoint: %w", err):
				default:
				}
			}
		}()
	}
	if n, ok := s.store.(datastore.ChangeNotifier); ok {
		go s.followChanges(ctx, n)
	}
	if n, ok := s.store.(datastore.EvictionNotifier); ok {
		go s.followEvictions(ctx, n)
	}
	if s.tele.Enabled() {
		addr, err := telemetry.Serve(ctx, s.tele.ListenAddress, s.metrics, s.Ready, s.log.With("subsystem", "telemetry"))
		if err != nil {
			nodeSrv.Stop()
			attestSrv.Stop()
			adminSrv.Stop()
			return fmt.Errorf("server: telemetry: %w", err)
		}
		s.log.Info("Serving metrics and health", "address", addr.String())
	}
	s.log.Info("Server ready", "address", tcp.Addr().String(), "admin_socket", s.cfg.SocketPath)
	// systemd Type=notify: ready once every listener is serving.
	if err := sdnotify.Ready(); err != nil {
		s.log.Warn("Could not notify systemd", "error", err)
	}

	select {
	case <-ctx.Done():
	case err = <-errCh:
	}
	s.log.Info("Server stopping")
	_ = sdnotify.Stopping()
	s.node.EndStreams() // else the graceful stop waits 3 s for Sync streams
	stopped := make(chan struct{})
	go func() {
		attestSrv.GracefulStop()
		nodeSrv.GracefulStop()
		adminSrv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(3 * time.Second):
		attestSrv.Stop()
		nodeSrv.Stop()
		adminSrv.Stop()
	}
	return err
}

// followChanges keeps the entry cache current with changes committed by
// other servers sharing the database: every notification (0 after a
// reconnect: "you may have missed some") triggers a catch-up from the
// last revision seen, coalesced so a burst costs one pass.
func (s *Server) followChanges(ctx context.Context, n datastore.ChangeNotifier) {
	kick := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-kick:
			}
			if err := s.catchUp(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("Catching up with entry changes failed; retrying", "error", err)
				time.Sleep(time.Second)
				select {
				case kick <- struct{}{}:
				default:
				}
			}
		}
	}()
	backoff := time.Second
	for ctx.Err() == nil {
		err := n.WatchEntryChanges(ctx, func(int64) {
			select {
			case kick <- struct{}{}:
			default:
			}
		})
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("Entry change feed stopped; restarting", "error", err)
		time.Sleep(backoff)
		backoff = min(backoff*2, 30*time.Second)
	}
}

// maxEventsByLookup bounds the events applied one lookup at a time; a
// larger gap reloads all entries instead (the cache diffs by revision, so
// agents still receive only what changed).
const maxEventsByLookup = 256

func (s *Server) catchUp(ctx context.Context) error {
	events, err := s.store.EntryEventsSince(ctx, s.cursor)
	if errors.Is(err, datastore.ErrEventsPruned) || (err == nil && len(events) > maxEventsByLookup) {
		entries, rev, err := s.store.ListEntries(ctx)
		if err != nil {
			return err
		}
		s.entries.Reset(entries, rev)
		s.cursor = rev
		return nil
	}
	if err != nil {
		return err
	}
	if len(events) == 0 {
		return nil
	}
	var upserts []registration.Entry
	var deleted []string
	for _, ev := range events {
		if ev.Deleted {
			deleted = append(deleted, ev.EntryID)
			continue
		}
		e, err := s.store.GetEntry(ctx, ev.EntryID)
		if errors.Is(err, datastore.ErrNotFound) {
			deleted = append(deleted, ev.EntryID) // deleted by a later event
			continue
		}
		if err != nil {
			return err
		}
		upserts = append(upserts, e)
	}
	rev := events[len(events)-1].Revision
	s.entries.Apply(upserts, deleted, rev)
	s.cursor = rev
	return nil
}

// housekeeping prunes expired join tokens and renews the server certificate.
func (s *Server) housekeeping(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		changed := s.entries.Changed()
		s.metrics.SetEntries(s.entries.Len())
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-t.C:
			if err := s.store.PruneJoinTokens(ctx, time.Now()); err != nil {
				s.log.Warn("Pruning join tokens failed", "error", err)
			}
		}
	}
}

// agentCountFor is how long hallmark_attested_agents reuses a count, so
// that scrapes cannot hammer the datastore.
const agentCountFor = 10 * time.Second

// attestedAgents returns the number of attested agents, counted at most
// once per agentCountFor (at scrape time); the last count when the
// datastore does not answer.
func (s *Server) attestedAgents() int {
	s.agentCountMu.Lock()
	defer s.agentCountMu.Unlock()
	if time.Since(s.agentCountAt) < agentCountFor {
		return s.agentCount
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	agents, err := s.store.ListAgents(ctx)
	s.agentCountAt = time.Now() // a failure is retried after agentCountFor too
	if err != nil {
		s.log.Warn("Counting agents for the metrics failed", "error", err)
		return s.agentCount
	}
	s.agentCount = len(agents)
	return s.agentCount
}

func (s *Server) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.serverCert()
		},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			pool := x509.NewCertPool()
			for _, c := range s.ca.Bundle() {
				pool.AddCert(c)
			}
			return &tls.Config{
				MinVersion:     tls.VersionTLS12,
				GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.serverCert() },
				ClientAuth:     tls.VerifyClientCertIfGiven,
				ClientCAs:      pool,
			}, nil
		},
	}
}

// serverCert returns the server's TLS certificate, an SVID for the server
// ID, minting a new one past half its life.
func (s *Server) serverCert() (*tls.Certificate, error) {
	s.certMu.Lock()
	defer s.certMu.Unlock()
	now := time.Now()
	if c := s.cert; c != nil {
		leaf := c.Leaf
		// Re-minted at half-life, and at once when its issuer is no longer
		// the active authority (an operator activated another and may be
		// about to revoke the old one).
		if now.Before(leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore)/2)) && issuedBy(leaf, s.ca.Certificate()) {
			return c, nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	certs, err := s.ca.SignX509SVID(context.Background(), ca.X509SVIDParams{ID: s.serverID, PublicKey: key.Public(), TTL: s.cfg.AgentSVIDTTL})
	if err != nil {
		return nil, fmt.Errorf("server: sign server certificate: %w", err)
	}
	s.cert = tlsCert(certs, key)
	return s.cert, nil
}

// issuedBy reports whether leaf was signed by ca's key.
func issuedBy(leaf, ca *x509.Certificate) bool {
	if len(leaf.AuthorityKeyId) > 0 && len(ca.SubjectKeyId) > 0 {
		return bytes.Equal(leaf.AuthorityKeyId, ca.SubjectKeyId)
	}
	return leaf.CheckSignatureFrom(ca) == nil
}

func tlsCert(certs []*x509.Certificate, key crypto.Signer) *tls.Certificate {
	c := &tls.Certificate{PrivateKey: key, Leaf: certs[0]}
	for _, cert := range certs {
		c.Certificate = append(c.Certificate, cert.Raw)
	}
	return c
}

// The CA and the JWT signer report tainted authorities to the Node API.
var (
	_ nodeapi.TaintReporter                 = (*ca.CA)(nil)
	_ interface{ TaintedKeyIDs() []string } = (*jwtsigner.Signer)(nil)
)
