package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
)

// Server is a running hallmark-server.
type Server struct {
	*Process
	env        *Env
	Dir        string
	ConfigPath string
	SocketPath string
	Address    string
	// TrustDomain is the server's trust domain (TrustDomain unless
	// WithTrustDomain); its agents join it.
	TrustDomain string
	procEnv     []string
}

// ServerOption changes a server's configuration.
type ServerOption func(*serverOpts)

type serverOpts struct {
	extraServer string // extra lines in the server block
	extra       string // extra top-level HCL
	caFrom      *Server
	trustDomain string
	procEnv     []string
	logLevel    string
}

// WithTrustDomain starts the server in trust domain td instead of
// TrustDomain; agents started for it join td too.
func WithTrustDomain(td string) ServerOption { return func(o *serverOpts) { o.trustDomain = td } }

// WithServerEnv adds "KEY=value" environment variables to the server
// process, e.g. SSL_CERT_FILE for a test CA of https_web bundle endpoints.
func WithServerEnv(kv ...string) ServerOption {
	return func(o *serverOpts) { o.procEnv = append(o.procEnv, kv...) }
}

// WithLogLevel sets the server's log_level (default "debug"); load
// benchmarks use "warn" so that logging does not weigh on what they
// measure.
func WithLogLevel(level string) ServerOption { return func(o *serverOpts) { o.logLevel = level } }

// WithCAFrom starts the server with a copy of other's CA and JWT signing
// keys (data/ca and data/jwt): HA servers share one CA and one JWT key set.
func WithCAFrom(other *Server) ServerOption { return func(o *serverOpts) { o.caFrom = other } }

// WithServerHCL adds lines to the server block.
func WithServerHCL(lines string) ServerOption {
	return func(o *serverOpts) { o.extraServer += lines + "\n" }
}

// WithHCL adds top-level HCL (e.g. node_attestor blocks).
func WithHCL(hcl string) ServerOption { return func(o *serverOpts) { o.extra += hcl + "\n" } }

// StartServer writes a configuration, starts the server and waits until
// it is healthy.
func (e *Env) StartServer(opts ...ServerOption) *Server {
	e.t.Helper()
	o := serverOpts{logLevel: "debug"}
	for _, opt := range opts {
		opt(&o)
	}
	dir, err := os.MkdirTemp(e.Dir, "srv")
	if err != nil {
		e.t.Fatal(err)
	}
	s := &Server{env: e, Dir: dir, SocketPath: filepath.Join(dir, "admin", "api.sock"), ConfigPath: filepath.Join(dir, "server.hcl"),
		TrustDomain: TrustDomain, procEnv: o.procEnv}
	if o.trustDomain != "" {
		s.TrustDomain = o.trustDomain
	}
	port := FreePort(e.t)
	s.Address = fmt.Sprintf("127.0.0.1:%d", port)
	writeFile(e.t, s.ConfigPath, fmt.Sprintf(`server {
  trust_domain = %q
  bind_address = "127.0.0.1"
  bind_port    = %d
  data_dir     = %q
  socket_path  = %q
  log_level    = %q
  %s
}
%s
`, s.TrustDomain, port, filepath.Join(dir, "data"), s.SocketPath, o.logLevel, o.extraServer, o.extra))
	if o.caFrom != nil {
		// The CA and the JWT signing keys.
		for _, sub := range []string{"ca", "jwt"} {
			src, dst := filepath.Join(o.caFrom.Dir, "data", sub), filepath.Join(dir, "data", sub)
			if err := os.MkdirAll(dst, 0o700); err != nil {
				e.t.Fatal(err)
			}
			ents, err := os.ReadDir(src)
			if err != nil {
				e.t.Fatal(err)
			}
			for _, ent := range ents {
				b, err := os.ReadFile(filepath.Join(src, ent.Name()))
				if err != nil {
					e.t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dst, ent.Name()), b, 0o600); err != nil {
					e.t.Fatal(err)
				}
			}
		}
		if err := os.Chmod(filepath.Join(dir, "data"), 0o700); err != nil {
			e.t.Fatal(err)
		}
	}
	s.Start()
	return s
}

// Start (re)starts the server process with its existing configuration and
// data, and waits until it is healthy.
func (s *Server) Start() {
	s.env.t.Helper()
	s.Process = s.env.startEnv(s.procEnv, "hallmark-server", "run", "-config", s.ConfigPath)
	WaitFor(s.env.t, 20*time.Second, "server healthy", func() bool {
		if s.Exited() {
			s.env.t.Fatalf("server exited: %v\n%s", s.err, s.Log())
		}
		_, err := s.CLI("healthcheck")
		return err == nil
	})
}

// CLI runs a hallmark-server admin command against this server.
func (s *Server) CLI(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The admin socket flag goes after the command words.
	words := 1
	if len(args) > 1 && !strings.HasPrefix(args[1], "-") {
		words = 2
	}
	full := append(append(append([]string{}, args[:words]...), "-socketPath", s.SocketPath), args[words:]...)
	return s.env.runCmd(ctx, "hallmark-server", full...)
}

// MustCLI runs an admin command and fails the test on error.
func (s *Server) MustCLI(args ...string) string {
	s.env.t.Helper()
	out, err := s.CLI(args...)
	if err != nil {
		s.env.t.Fatalf("hallmark-server %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// Token generates a join token.
func (s *Server) Token(args ...string) string {
	s.env.t.Helper()
	out := s.MustCLI(append([]string{"token", "generate"}, args...)...)
	tok := field(out, "Token")
	if tok == "" {
		s.env.t.Fatalf("no token in %q", out)
	}
	return tok
}

// CreateEntry creates an entry and returns its ID.
func (s *Server) CreateEntry(spiffeID, parentID string, args ...string) string {
	s.env.t.Helper()
	full := []string{"entry", "create", "-spiffeID", spiffeID, "-parentID", parentID}
	out := s.MustCLI(append(full, args...)...)
	id := field(out, "Entry ID")
	if id == "" {
		s.env.t.Fatalf("no entry ID in %q", out)
	}
	return id
}

// BundlePath writes the server's bundle to a file and returns its path.
func (s *Server) BundlePath() string {
	s.env.t.Helper()
	p := filepath.Join(s.Dir, "bundle.pem")
	writeFile(s.env.t, p, s.MustCLI("bundle", "show"))
	return p
}

// Admin returns a gRPC client of the server's admin API.
func (s *Server) Admin() apiv1.AdminClient {
	s.env.t.Helper()
	conn, err := grpc.NewClient("unix://"+s.SocketPath, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20), grpc.MaxCallSendMsgSize(256<<20)))
	if err != nil {
		s.env.t.Fatal(err)
	}
	s.env.t.Cleanup(func() { conn.Close() })
	return apiv1.NewAdminClient(conn)
}
