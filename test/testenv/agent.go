package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Agent is a running hallmark-agent.
type Agent struct {
	*Process
	env        *Env
	Dir        string
	ConfigPath string
	SocketPath string
	// TrustDomain is the trust domain of the server the agent joined.
	TrustDomain string
	token       string
	procEnv     []string
}

// AgentOption changes an agent's configuration.
type AgentOption func(*agentOpts)

type agentOpts struct {
	extraAgent string
	extra      string
	noWait     bool
	insecure   bool
	serverAddr string
	trust      string
	env        []string
}

// WithAgentEnv adds "KEY=value" environment variables to the agent process.
func WithAgentEnv(kv ...string) AgentOption {
	return func(o *agentOpts) { o.env = append(o.env, kv...) }
}

// WithServerAddress points the agent at addr (e.g. a load balancer)
// instead of the server's own address.
func WithServerAddress(addr string) AgentOption { return func(o *agentOpts) { o.serverAddr = addr } }

// InsecureBootstrap configures the agent without a trust bundle.
func InsecureBootstrap() AgentOption { return func(o *agentOpts) { o.insecure = true } }

// WithAgentHCL adds lines to the agent block.
func WithAgentHCL(lines string) AgentOption {
	return func(o *agentOpts) { o.extraAgent += lines + "\n" }
}

// WithAgentTopHCL adds top-level HCL (e.g. workload_attestor blocks).
func WithAgentTopHCL(hcl string) AgentOption { return func(o *agentOpts) { o.extra += hcl + "\n" } }

// WithTrustHCL replaces the agent's trust_bundle_path line (the server's
// current bundle) with lines, e.g. trust_bundle_url settings.
func WithTrustHCL(lines string) AgentOption { return func(o *agentOpts) { o.trust = lines } }

// NoWait starts the agent without waiting for it to become healthy.
func NoWait() AgentOption { return func(o *agentOpts) { o.noWait = true } }

// StartAgent starts an agent attesting to srv with a join token.
func (e *Env) StartAgent(srv *Server, token string, opts ...AgentOption) *Agent {
	e.t.Helper()
	var o agentOpts
	for _, opt := range opts {
		opt(&o)
	}
	dir, err := os.MkdirTemp(e.Dir, "ag")
	if err != nil {
		e.t.Fatal(err)
	}
	a := &Agent{env: e, Dir: dir, SocketPath: filepath.Join(dir, "public", "api.sock"), ConfigPath: filepath.Join(dir, "agent.hcl"),
		token: token, TrustDomain: srv.TrustDomain, procEnv: o.env}
	trust := o.trust
	if trust == "" {
		trust = fmt.Sprintf("trust_bundle_path = %q", srv.BundlePath())
	}
	addr := srv.Address
	if o.serverAddr != "" {
		addr = o.serverAddr
	}
	if o.insecure {
		trust = "insecure_bootstrap = true"
	}
	writeFile(e.t, a.ConfigPath, fmt.Sprintf(`agent {
  trust_domain      = %q
  server_address    = %q
  %s
  data_dir          = %q
  socket_path       = %q
  log_level         = "debug"
  %s
}
%s
`, a.TrustDomain, addr, trust, filepath.Join(dir, "data"), a.SocketPath, o.extraAgent, o.extra))
	a.start(!o.noWait)
	return a
}

func (a *Agent) start(wait bool) {
	a.env.t.Helper()
	args := []string{"run", "-config", a.ConfigPath}
	if a.token != "" {
		args = append(args, "-joinToken", a.token)
	}
	a.Process = a.env.startEnv(a.procEnv, "hallmark-agent", args...)
	if wait {
		a.WaitHealthy()
	}
}

// Restart stops the agent and starts it again with the same data.
func (a *Agent) Restart() {
	a.env.t.Helper()
	a.Stop()
	a.start(true)
}

// RestartWithoutToken stops the agent and starts it again with the same
// data but without -joinToken, as an operator's second `run` does.
func (a *Agent) RestartWithoutToken() {
	a.env.t.Helper()
	a.Stop()
	a.token = ""
	a.start(true)
}

// WaitHealthy waits until the agent's health check passes.
func (a *Agent) WaitHealthy() {
	a.env.t.Helper()
	WaitFor(a.env.t, 20*time.Second, "agent healthy", func() bool {
		if a.Exited() {
			a.env.t.Fatalf("agent exited: %v\n%s", a.err, a.Log())
		}
		return a.Healthy() == nil
	})
}

// Healthy checks the agent's gRPC health service.
func (a *Agent) Healthy() error {
	conn, err := grpc.NewClient("unix://"+a.SocketPath, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return err
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("status %s", resp.GetStatus())
	}
	return nil
}

// Addr is the Workload API address for go-spiffe clients.
func (a *Agent) Addr() string { return "unix://" + a.SocketPath }

// ID returns the agent's SPIFFE ID (join-token agents).
func (a *Agent) ID() string {
	return fmt.Sprintf("spiffe://%s/agent/join_token/%s", a.TrustDomain, a.token)
}

// CLI runs a hallmark-agent command.
func (a *Agent) CLI(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return a.env.runCmd(ctx, "hallmark-agent", args...)
}
