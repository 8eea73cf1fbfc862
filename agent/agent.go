// Package agent wires the Hallmark agent together: configuration, node
// attestation, the agent SVID and its renewal, the entry push stream and
// SVID minting, and the Workload API on a unix socket.
//
// Wiring lives here and in cmd/; the packages it assembles know nothing of
// each other beyond the small interfaces they declare.
package agent

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/hallmarkid/hallmark/agent/bootstrap"
	"github.com/hallmarkid/hallmark/agent/cache"
	"github.com/hallmarkid/hallmark/agent/client"
	"github.com/hallmarkid/hallmark/agent/config"
	"github.com/hallmarkid/hallmark/agent/manager"
	"github.com/hallmarkid/hallmark/agent/peercred"
	"github.com/hallmarkid/hallmark/agent/workloadapi"
	"github.com/hallmarkid/hallmark/agent/workloadattest"
	"github.com/hallmarkid/hallmark/attestors"
	"github.com/hallmarkid/hallmark/internal/hclconf"
	"github.com/hallmarkid/hallmark/internal/pidlock"
	"github.com/hallmarkid/hallmark/internal/sdnotify"
	"github.com/hallmarkid/hallmark/internal/telemetry"
	"github.com/hallmarkid/hallmark/sds"
)

// Agent is a running Hallmark agent.
type Agent struct {
	cfg       *config.Config
	log       *slog.Logger
	collector attestors.NodeCollector
	workload  []attestors.WorkloadAttestor
	client    *client.Client
	cache     *cache.Cache
	jwt       *cache.JWTStore
	mgr       *manager.Manager
	state     *stateDir
	lock      *pidlock.Lock // data_dir, held from New until Run returns
	health    *health.Server
	metrics   *telemetry.Metrics
	tele      telemetry.HCLConfig
	// renewNow wakes rotateLoop to renew the agent SVID before its
	// half-life (its issuer was tainted).
	renewNow chan struct{}
	// boot is the configured bootstrap bundle (nil with
	// insecure_bootstrap); booting reports that no server-given bundle is
	// persisted, so boot is loaded again before each first-attestation
	// attempt. Only the goroutine attesting touches booting.
	boot    *bootstrap.Source
	booting bool

	mu          sync.Mutex // guards the fields that follow
	svid        *x509svid.SVID
	svidAt      time.Time // when svid was received; zero when loaded from disk
	canReattest bool
	// refused says why the server no longer accepts this agent (evicted,
	// banned, re-attestation refused); "" while it is attested.
	refused string
	// attesting says how the first attestation goes while there is no
	// agent SVID yet (see attestingErr).
	attesting string
	// bundleFrom names where the trust bundle the agent verifies the
	// server with came from (data_dir or trust_bundle_path).
	bundleFrom string

	// serving reports that the Workload API is being served.
	serving atomic.Bool
}

// New builds an agent from cfg. Nothing connects or listens until Run.
func New(cfg *config.Config, log *slog.Logger, opts ...Option) (_ *Agent, err error) {
	o := newOptions(opts)
	a := &Agent{cfg: cfg, log: log, cache: cache.New(), jwt: cache.NewJWTStore(), state: &stateDir{dir: cfg.DataDir}, health: health.NewServer(),
		metrics: telemetry.New(telemetry.Config{Daemon: telemetry.Agent, Version: o.version}), renewNow: make(chan struct{}, 1)}
	if err := a.state.init(); err != nil {
		return nil, err
	}
	if a.lock, err = lockDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			a.lock.Release()
		}
	}()
	if b := cfg.Telemetry; b != nil {
		if err := hclconf.DecodeBlock(*b, &a.tele); err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		if err := a.tele.Validate(); err != nil {
			return nil, fmt.Errorf("agent: telemetry (%s): %w", b.Pos(), err)
		}
	}
	if a.collector, err = newCollector(cfg, log); err != nil {
		return nil, fmt.Errorf("agent: node_attestor %q (%s): %w", cfg.NodeAttestor.Kind, cfg.NodeAttestor.Pos(), err)
	}
	if a.workload, err = newWorkloadAttestors(cfg, log); err != nil {
		return nil, err
	}
	bundle, err := a.initialBundle()
	if err != nil {
		return nil, err
	}
	a.client, err = client.New(client.Config{
		Address: cfg.ServerAddress, TrustDomain: cfg.TrustDomain, Bundle: bundle, InsecureBootstrap: cfg.InsecureBootstrap,
		DeferBundle: a.booting,
	})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.mgr = manager.New(manager.Config{
		Server: a.client, Cache: a.cache, TrustDomain: cfg.TrustDomain, JWT: a.jwt,
		OnBundle: func(certs []*x509.Certificate) {
			if err := a.state.saveBundle(certs); err != nil {
				log.Warn("Persisting the trust bundle failed", "error", err)
			}
		},
		OnEvicted: a.onEvicted,
		OnTainted: a.onTainted,
		OnSVIDs:   a.metrics.WorkloadSVIDsRotated,
		Log:       log.With("subsystem", "manager"),
	})
	a.metrics.AgentCache(a.cacheStats)
	return a, nil
}

// initialBundle prefers the bundle persisted from the server (it follows
// CA rotation) over the configured bootstrap bundle, which is read here
// (a trust_bundle_path that cannot be read stops the agent) and again
// before every first-attestation attempt (a trust_bundle_url is only
// fetched then).
func (a *Agent) initialBundle() ([]*x509.Certificate, error) {
	if a.cfg.TrustBundlePath != "" || a.cfg.TrustBundleURL != "" {
		a.boot = &bootstrap.Source{TrustDomain: a.cfg.TrustDomain, Path: a.cfg.TrustBundlePath, URL: a.cfg.TrustBundleURL,
			Format: a.cfg.TrustBundleFormat, CheckURL: func(u string) error {
				return config.CheckTrustBundleURL(u, a.cfg.TrustBundleURLAllowLoopbackHTTP)
			}}
	}
	if certs, err := a.state.loadBundle(); err == nil {
		a.bundleFrom = "the bundle saved in data_dir " + a.cfg.DataDir
		return certs, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		a.log.Warn("Ignoring unreadable persisted bundle", "error", err)
	}
	switch {
	case a.cfg.TrustBundlePath != "":
		a.booting = true
		certs, err := a.boot.Load(context.Background())
		if err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		a.bundleFrom = "trust_bundle_path " + a.cfg.TrustBundlePath
		return certs, nil
	case a.cfg.TrustBundleURL != "":
		a.booting = true
		return nil, nil
	case a.cfg.InsecureBootstrap:
		a.log.Warn("INSECURE BOOTSTRAP: the server's identity will not be verified on first contact; use trust_bundle_path in production")
		return nil, nil
	}
	return nil, errors.New("agent: trust_bundle_path or trust_bundle_url is required unless insecure_bootstrap is set")
}

// reloadBootstrap loads the bootstrap bundle again before a first
// attestation attempt, so that a file or URL fixed meanwhile (after a CA
// rotation) is used without a restart.
func (a *Agent) reloadBootstrap(ctx context.Context) error {
	if !a.booting {
		return nil
	}
	certs, err := a.boot.Load(ctx)
	if err != nil {
		return err
	}
	a.client.SetBundle(certs)
	return nil
}

// Run runs the agent until ctx is done.
func (a *Agent) Run(ctx context.Context) error {
	defer a.lock.Release()
	defer a.client.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Telemetry first: /live answers and /ready says why not while the
	// agent is still attesting.
	if a.tele.Enabled() {
		addr, err := telemetry.Serve(ctx, a.tele.ListenAddress, a.metrics, a.Ready, a.log.With("subsystem", "telemetry"))
		if err != nil {
			return fmt.Errorf("agent: telemetry: %w", err)
		}
		a.log.Info("Serving metrics and health", "address", addr.String())
	}
	if err := a.loadOrAttest(ctx); err != nil {
		return err
	}
	l, err := listenPublic("workload API socket", a.cfg.SocketPath)
	if err != nil {
		return err
	}
	srv := grpc.NewServer(append(append([]grpc.ServerOption{grpc.Creds(peercred.TransportCredentials())}, a.metrics.ServerOptions()...), workloadapi.ServerOptions()...)...)
	wa := workloadattest.New(a.log.With("subsystem", "workload_attestor"), a.workload...).OnFailure(a.metrics.WorkloadAttestationFailed)
	wh, err := workloadapi.New(workloadapi.Config{Cache: a.cache, Attestor: wa, Metrics: a.metrics, Log: a.log.With("subsystem", "workload_api")}).
		WithJWT(workloadapi.JWTConfig{Store: a.jwt, Minter: a.client})
	if err != nil {
		l.Close()
		return fmt.Errorf("agent: %w", err)
	}
	wh.Register(srv)
	healthpb.RegisterHealthServer(srv, healthWithDetail{a.health, a.Ready})
	servers := []*grpc.Server{srv}
	listeners := []net.Listener{l}
	extra, extraL, err := a.sds(srv, wa)
	if err != nil {
		l.Close()
		return err
	}
	if extra != nil {
		servers = append(servers, extra)
		listeners = append(listeners, extraL)
	}

	a.serving.Store(true)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); _ = a.mgr.Run(ctx) }()
	go func() { defer wg.Done(); a.rotateLoop(ctx) }()
	go func() { defer wg.Done(); a.healthLoop(ctx) }()
	errCh := make(chan error, len(servers))
	for i := range servers {
		go func() { errCh <- servers[i].Serve(listeners[i]) }()
	}
	a.log.Info("Agent ready", "workload_api_socket", a.cfg.SocketPath, "agent_id", a.currentSVID().ID.String())
	// systemd Type=notify: ready once attested and serving.
	if err := sdnotify.Ready(); err != nil {
		a.log.Warn("Could not notify systemd", "error", err)
	}

	select {
	case <-ctx.Done():
	case err = <-errCh:
	}
	a.log.Info("Agent stopping")
	_ = sdnotify.Stopping()
	cancel()
	done := make(chan struct{})
	go func() {
		for _, s := range servers {
			s.GracefulStop()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		for _, s := range servers {
			s.Stop()
		}
	}
	wg.Wait()
	return err
}

// sds registers Envoy SDS on the Workload API server and, when the sds
// block names a socket_path (Istio: /run/secrets/workload-spiffe-uds/socket),
// returns a second server for that socket.
func (a *Agent) sds(srv *grpc.Server, wa *workloadattest.Attestor) (*grpc.Server, net.Listener, error) {
	var hc sds.HCLConfig
	if a.cfg.SDS != nil {
		if err := hclconf.DecodeBlock(*a.cfg.SDS, &hc); err != nil {
			return nil, nil, err
		}
		if err := hc.Validate(); err != nil {
			return nil, nil, fmt.Errorf("agent: sds block (%s): %w", a.cfg.SDS.Pos(), err)
		}
	}
	cfg := hc.Config()
	cfg.Cache, cfg.Attestor, cfg.Metrics, cfg.Log = a.cache, wa, a.metrics, a.log.With("subsystem", "sds")
	h, err := sds.New(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("agent: sds: %w", err)
	}
	h.Register(srv)
	if hc.ExtraSocketPath == "" {
		return nil, nil, nil
	}
	l, err := listenPublic("sds socket", hc.ExtraSocketPath)
	if err != nil {
		return nil, nil, err
	}
	extra := grpc.NewServer(append(append([]grpc.ServerOption{grpc.Creds(peercred.TransportCredentials())}, a.metrics.ServerOptions()...), workloadapi.ServerOptions()...)...)
	h.RegisterExtraSocket(extra)
	healthpb.RegisterHealthServer(extra, healthWithDetail{a.health, a.Ready})
	a.log.Info("Serving SDS on an extra socket", "socket_path", hc.ExtraSocketPath)
	return extra, l, nil
}

// cacheStats are the cache sizes the metrics export.
func (a *Agent) cacheStats() telemetry.CacheStats {
	entries, svids := a.cache.Stats()
	return telemetry.CacheStats{Entries: entries, X509SVIDs: svids, JWTSVIDs: a.jwt.Tokens(),
		FederatedBundles: len(a.cache.FederatedBundles())}
}

// Ready reports whether the agent has a valid SVID (and so can mint and
// serve); an agent whose SVID expired, or that the server evicted or
// banned, is not ready, and the error says why.
func (a *Agent) Ready(context.Context) error {
	a.mu.Lock()
	refused := a.refused
	a.mu.Unlock()
	if refused != "" {
		return errors.New(refused)
	}
	s := a.currentSVID()
	if s == nil {
		return a.attestingErr()
	}
	if !time.Now().Before(s.Certificates[0].NotAfter) {
		return fmt.Errorf("agent SVID expired at %s", s.Certificates[0].NotAfter.UTC().Format(time.RFC3339))
	}
	if !a.serving.Load() {
		return errors.New("the Workload API is not serving yet")
	}
	return nil
}

func (a *Agent) currentSVID() *x509svid.SVID {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.svid
}

func (a *Agent) setSVID(s *x509svid.SVID, canReattest bool) error {
	if err := a.state.saveSVID(s, canReattest); err != nil {
		return err
	}
	a.mu.Lock()
	a.svid, a.svidAt = s, time.Now()
	a.canReattest = canReattest
	a.refused = ""
	a.mu.Unlock()
	a.client.SetSVID(s)
	a.metrics.AgentSVIDRotated(s.Certificates[0].NotAfter)
	return nil
}

// loadOrAttest reuses a persisted, unexpired SVID or attests.
func (a *Agent) loadOrAttest(ctx context.Context) error {
	s, canReattest, err := a.state.loadSVID(a.cfg.TrustDomain)
	switch {
	case err == nil && time.Now().Before(s.Certificates[0].NotAfter):
		a.log.Info("Reusing persisted agent SVID", "agent_id", s.ID.String(), "expires_at", s.Certificates[0].NotAfter)
		a.mu.Lock()
		a.svid, a.canReattest = s, canReattest
		a.mu.Unlock()
		a.client.SetSVID(s)
		a.metrics.SetAgentSVIDExpiry(s.Certificates[0].NotAfter)
		return nil
	case err == nil:
		a.log.Info("Persisted agent SVID expired; attesting again", "agent_id", s.ID.String())
	case !errors.Is(err, os.ErrNotExist):
		a.log.Warn("Ignoring unreadable persisted agent SVID", "error", err)
	}
	if a.cfg.NodeAttestor.Kind == config.JoinTokenKind && a.cfg.JoinToken == "" {
		return fmt.Errorf("agent: no usable agent SVID in %s and no join token to attest with: give -joinToken (or join_token), or configure a node_attestor", a.cfg.DataDir)
	}
	return a.attest(ctx)
}

// attest attests with backoff while the server is unreachable; a refusal
// is final.
func (a *Agent) attest(ctx context.Context) error {
	// Jittered, and within the server's window when it is busy: a fleet
	// started at once does not retry in step.
	backoff := manager.Backoff{Min: 200 * time.Millisecond, Max: 10 * time.Second}
	for {
		err := a.reloadBootstrap(ctx)
		if err == nil {
			err = a.attestOnce(ctx)
		}
		if err == nil {
			a.booting = false
			return nil
		}
		switch status.Code(errors.Unwrap(err)) {
		case codes.PermissionDenied, codes.InvalidArgument, codes.Unauthenticated:
			return fmt.Errorf("agent: attestation refused: %w", err)
		}
		err = a.explainTLS(err)
		a.setAttesting(err)
		wait := backoff.After(err)
		a.log.Warn("Attestation failed; retrying", "error", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

func (a *Agent) attestOnce(ctx context.Context) error {
	key, csr, err := manager.NewKeyAndCSR()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	res, err := a.client.Attest(ctx, a.collector, key, csr)
	if err != nil {
		return err
	}
	return a.adopt(res, key)
}

func (a *Agent) adopt(res *client.AttestResult, key crypto.Signer) error {
	id, err := x509svid.IDFromCert(res.Certs[0])
	if err != nil {
		return fmt.Errorf("agent: server returned an invalid SVID: %w", err)
	}
	if id.TrustDomain() != a.cfg.TrustDomain {
		return fmt.Errorf("agent: server returned an SVID in trust domain %q", id.TrustDomain())
	}
	a.client.SetBundle(res.Bundle)
	if err := a.state.saveBundle(res.Bundle); err != nil {
		return err
	}
	if err := a.setSVID(&x509svid.SVID{ID: id, Certificates: res.Certs, PrivateKey: key}, res.CanReattest); err != nil {
		return err
	}
	a.log.Info("Node attested", "agent_id", id.String(), "expires_at", res.Certs[0].NotAfter)
	return nil
}

// TrustDomain returns the agent's trust domain.
func (a *Agent) TrustDomain() spiffeid.TrustDomain { return a.cfg.TrustDomain }
