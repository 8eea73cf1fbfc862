// Package server wires the Hallmark server together: configuration,
// datastore, CA, entry cache, node attestors, the Node API on TCP (TLS) and
// the Admin API on an owner-only unix socket.
//
// Wiring lives here and in cmd/; the packages it assembles know nothing of
// each other beyond the small interfaces they declare.
package server

import (
	"context"
	"crypto/tls"
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
	"github.com/hallmarkid/hallmark/server/k8sregistrar"
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

	reg     *k8sregistrar.Registrar // nil without a k8s_registrar block
	regDone chan struct{}           // closed when the registrar stopped (nil if never started)

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
	if err := s.initOps(verifiers, o.version); err != nil {
		s.store.Close()
		return nil, err
	}
	if err := s.initFederation(); err != nil {
		s.close()
		return nil, err
	}
	if err := s.initRegistrar(); err != nil {
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
func (s *Server) initOps(verifiers []attestors.NodeVerifier, version string) error {
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
	s.metrics = telemetry.New(telemetry.Config{Daemon: telemetry.Server, Attestors: attestorTypes(verifiers), Version: version})
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
	defer s.waitRegistrar() // before the datastore closes
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
	s.startRegistrar(ctx)
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
	if n, ok := s.store.(datastore.KVNotifier); ok {
		go s.followKV(ctx, n)
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
	// Stop taking Node API connections first: agents reconnecting while
	// the server stops are refused by the kernel at once, instead of
	// costing both sides a TLS handshake on a connection then dropped.
	_ = gate.Close()
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
