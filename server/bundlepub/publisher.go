package bundlepub

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Target is one place the bundle is published to.
type Target interface {
	// Publish makes the target hold content, reading it first and writing
	// only when it differs; it reports whether it wrote.
	Publish(ctx context.Context, content []byte) (wrote bool, err error)
	// String names the target in logs ("file /etc/...", "k8s_configmap
	// hallmark/hallmark-bundle").
	String() string
}

// Defaults.
const (
	DefaultResync  = 5 * time.Minute
	publishTimeout = 15 * time.Second
	maxBackoff     = 30 * time.Second
)

// Output is a target and the format it receives.
type Output struct {
	Target Target
	Format Format
}

// Config configures a Publisher.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	// Bundle returns the current authorities; Changed a channel closed at
	// their next change (server/ca's Bundle and BundleChanged).
	Bundle  func() []*x509.Certificate
	Changed func() <-chan struct{}
	// Sync, when set, brings the bundle up to date with what servers
	// sharing the datastore agreed on before each publication (server/ca's
	// Rotate: it adopts the shared CA state). Without it a server that
	// has just prepared an authority another server's write replaced
	// could publish a bundle nobody keeps. Errors are logged only: the
	// local bundle is still published.
	Sync    func(context.Context) error
	Outputs []Output
	// Resync is how often an unchanged bundle is checked against each
	// target again (DefaultResync when 0).
	Resync time.Duration
	Log    *slog.Logger
}

// Publisher keeps every output up to date with the bundle.
type Publisher struct {
	cfg Config
}

// New returns a publisher; nothing is published until Run.
func New(cfg Config) *Publisher {
	if cfg.Resync <= 0 {
		cfg.Resync = DefaultResync
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Publisher{cfg: cfg}
}

// Run publishes to every output until ctx is done: at once, on each bundle
// change, every resync interval, and after a failure with backoff (1 s
// doubling to 30 s; a bundle change retries at once).
func (p *Publisher) Run(ctx context.Context) {
	done := make(chan struct{})
	for _, o := range p.cfg.Outputs {
		go func() {
			defer func() { done <- struct{}{} }()
			p.run(ctx, o)
		}()
	}
	for range p.cfg.Outputs {
		<-done
	}
}

func (p *Publisher) run(ctx context.Context, o Output) {
	backoff := time.Second
	for {
		changed := p.cfg.Changed() // before reading: no change is missed
		wait := p.cfg.Resync
		if err := p.publishOnce(ctx, o); err != nil {
			if ctx.Err() != nil {
				return
			}
			p.cfg.Log.Error("Publishing the trust bundle failed; retrying", "target", o.Target.String(), "error", err, "retry_in", backoff)
			wait, backoff = backoff, min(backoff*2, maxBackoff)
		} else {
			backoff = time.Second
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-changed:
			t.Stop()
		case <-t.C:
		}
	}
}

func (p *Publisher) publishOnce(ctx context.Context, o Output) error {
	if p.cfg.Sync != nil {
		if err := p.cfg.Sync(ctx); err != nil && ctx.Err() == nil {
			p.cfg.Log.Debug("Syncing the CA state before publishing failed; publishing this server's bundle", "error", err)
		}
	}
	certs := p.cfg.Bundle()
	content, err := Encode(p.cfg.TrustDomain, certs, o.Format)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	wrote, err := o.Target.Publish(ctx, content)
	if err != nil {
		return err
	}
	if wrote {
		p.cfg.Log.Info("Published the trust bundle", "target", o.Target.String(), "format", string(o.Format), "authorities", len(certs))
	}
	return nil
}

// PublishAll publishes the current bundle to every output once, returning
// the first error (for tests and for a check at start-up).
func (p *Publisher) PublishAll(ctx context.Context) error {
	for _, o := range p.cfg.Outputs {
		if err := p.publishOnce(ctx, o); err != nil {
			return fmt.Errorf("%s: %w", o.Target, err)
		}
	}
	return nil
}
