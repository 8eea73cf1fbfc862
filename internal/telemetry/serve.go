package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

const (
	// ReadyTimeout bounds one call of the ready function.
	ReadyTimeout  = 5 * time.Second
	shutdownGrace = 5 * time.Second
)

// readyCacheFor is how long a /ready answer is reused, so that probes from
// anyone who can reach the port cannot hammer the datastore.
var readyCacheFor = time.Second

// Check is one named readiness condition.
type Check struct {
	Name  string
	Check func(ctx context.Context) error
}

// AllReady returns a ready function that runs every check and reports
// all failures at once ("datastore: ...; ca: ..."). Use it to build
// Serve's ready argument: server: datastore and CA usable; agent: a valid
// (unexpired) SVID and the Workload API serving.
func AllReady(checks ...Check) func(context.Context) error {
	return func(ctx context.Context) error {
		var errs []string
		for _, c := range checks {
			if err := c.Check(ctx); err != nil {
				errs = append(errs, c.Name+": "+err.Error())
			}
		}
		if len(errs) > 0 {
			return errors.New(strings.Join(errs, "; "))
		}
		return nil
	}
}

// Handler returns the telemetry HTTP handler:
//
//	GET /metrics  Prometheus exposition of m (empty when m is nil)
//	GET /live     200 "ok" while the process runs
//	GET /ready    200 "ready" when ready(ctx) returns nil, else 503 with the reason
//
// A nil ready means always ready. Answers of /ready are reused for one
// second.
func Handler(m *Metrics, ready func(context.Context) error, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rc := &readyCache{ready: ready, log: log}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.HandleFunc("GET /live", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if err := rc.check(r.Context()); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %v\n", err)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

type readyCache struct {
	ready func(context.Context) error
	log   *slog.Logger

	mu   sync.Mutex // guards the fields that follow; held during a check
	at   time.Time
	err  error
	was  bool // the last answer was ready
	seen bool
}

func (c *readyCache) check(ctx context.Context) error {
	if c.ready == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen && time.Since(c.at) < readyCacheFor {
		return c.err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ReadyTimeout)
	defer cancel()
	err := c.ready(ctx)
	if now := err == nil; !c.seen || now != c.was {
		if now {
			c.log.Info("Ready")
		} else {
			c.log.Warn("Not ready", "reason", err)
		}
		c.was = now
	}
	c.at, c.err, c.seen = time.Now(), err, true
	return err
}

// Serve listens on addr (host:port; port 0 picks one) and serves Handler
// until ctx is done, then shuts down gracefully. It returns the bound
// address once listening; a listen error is returned at once.
func Serve(ctx context.Context, addr string, m *Metrics, ready func(context.Context) error, log *slog.Logger) (net.Addr, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("telemetry: listen: %w", err)
	}
	srv := &http.Server{
		Handler:           Handler(m, ready, log),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("telemetry: serve", "error", err)
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
	}()
	log.Info("Telemetry listening", "address", ln.Addr().String(), "paths", "/metrics /live /ready")
	return ln.Addr(), nil
}
