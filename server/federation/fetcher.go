package federation

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/server/datastore"
)

// Fetcher defaults.
const (
	DefaultMinRefresh   = time.Minute
	DefaultMaxRefresh   = 24 * time.Hour
	DefaultRefresh      = 5 * time.Minute // when a bundle has no refresh hint
	DefaultRetryMin     = 5 * time.Second
	DefaultRetryMax     = 5 * time.Minute
	DefaultFetchTimeout = 10 * time.Second
	// DefaultStaticReload is how often static bundles are re-read from the
	// datastore, for changes made by other servers sharing it.
	DefaultStaticReload   = 10 * time.Second
	maxEndpointChainCerts = 16
)

// KVPrefix prefixes the datastore KV keys of federated bundles; the full
// key is KVPrefix + trust domain name.
const KVPrefix = "federation/bundle/"

// KV persists the last accepted bundle of each federated trust domain. It
// is the shape of server/datastore's KV: GetKV returns an error matching
// datastore.ErrNotFound for an absent key.
type KV interface {
	GetKV(ctx context.Context, key string) ([]byte, error)
	PutKV(ctx context.Context, key string, value []byte) error
}

// OwnerK8sRegistrar marks the dynamic relationships the Kubernetes
// registrar created from ClusterFederatedTrustDomain objects.
const OwnerK8sRegistrar = "k8s_registrar"

// Relationship is one federated trust domain: where its bundle endpoint
// is, how it authenticates, and the bundle to trust before the first fetch.

type Relationship struct {
	TrustDomain spiffeid.TrustDomain
	// URL is the https:// address of the bundle endpoint.
	URL     string
	Profile Profile
	// EndpointID is the SPIFFE ID the endpoint's SVID must carry
	// (ProfileHTTPSSPIFFE only). It must be in TrustDomain.
	EndpointID spiffeid.ID
	// TrustBundle is the bootstrap bundle of TrustDomain, used until a
	// bundle has been accepted and persisted. When nil, TrustBundlePath is
	// read instead (format TrustBundleFormat: "spiffe", "pem", or "" to
	// detect). ProfileHTTPSSPIFFE needs one unless a bundle is stored.
	TrustBundle       *spiffebundle.Bundle
	TrustBundlePath   string
	TrustBundleFormat string
	// Owner is who manages a dynamic relationship: "" for the CLI (and
	// records stored before owners were recorded), OwnerK8sRegistrar for
	// the Kubernetes registrar.
	Owner string
}

// FetcherConfig configures a Fetcher.
type FetcherConfig struct {
	// TrustDomain is our own; federating with it is refused.
	TrustDomain   spiffeid.TrustDomain
	Relationships []Relationship
	// Store persists accepted bundles so that a restart keeps them. When
	// nil, bundles live in memory only.
	Store KV
	// WebRoots verifies https_web endpoints; nil means the system roots.
	WebRoots *x509.CertPool

	// MinRefresh and MaxRefresh clamp refresh hints (defaults 1 min and 1
	// day). DefaultRefresh applies to bundles without a hint.
	MinRefresh, MaxRefresh, DefaultRefresh time.Duration
	// RetryMin and RetryMax bound the doubling delay after failed fetches
	// (defaults 5 s and 5 min, never beyond the refresh interval).
	RetryMin, RetryMax time.Duration
	// Timeout bounds one fetch (default 10 s).
	Timeout time.Duration
	// StaticReload is how often Run re-reads static bundles from Store
	// (changes made by other servers sharing it); 0 = DefaultStaticReload.
	StaticReload time.Duration
	// OnRefresh, when set, is told of every refresh attempt: its start and
	// its error (nil on success), for the federation refresh metrics.
	OnRefresh func(td spiffeid.TrustDomain, at time.Time, err error)

	Log *slog.Logger
}

// Status describes one relationship, for logs and the admin API.
type Status struct {
	TrustDomain spiffeid.TrustDomain
	URL         string
	Profile     Profile
	// HasBundle reports whether a bundle is held (bootstrap, stored or
	// fetched); Revoked whether it is empty.
	HasBundle, Revoked bool
	Sequence           uint64 // valid when HasSequence
	HasSequence        bool
	X509Authorities    int
	LastAttempt        time.Time
	LastSuccess        time.Time
	LastError          string // of the last attempt; empty after a success
	// RefreshInterval is the clamped refresh hint of the current bundle.
	RefreshInterval time.Duration
	NextRefresh     time.Time // set by Run
	// Static reports a bundle set by an operator (SetBundle) for a trust
	// domain without a relationship: it is never fetched.
	Static bool
	// Dynamic reports a relationship created over the admin API
	// (CreateRelationship), kept in Store; the others come from the
	// configuration and are read-only. EndpointID is the https_spiffe
	// endpoint's SPIFFE ID.
	Dynamic    bool
	EndpointID spiffeid.ID
}

// Fetcher keeps the bundles of federated trust domains current.
type Fetcher struct {
	cfg FetcherConfig
	log *slog.Logger

	staticMu sync.Mutex // serialises changes of static bundles and their index in Store
	dynMu    sync.Mutex // serialises changes of dynamic relationships and their record in Store
	loops    sync.WaitGroup

	mu      sync.Mutex // guards the fields that follow and every relState's bundle, status and stop
	rels    []*relState
	changed chan struct{}
	static  map[spiffeid.TrustDomain]staticBundle
	// runCtx is Run's context, from which each relationship's refresh
	// loop derives its own; nil before Run.
	runCtx context.Context
}

type relState struct {
	rel     Relationship
	dynamic bool
	client  *http.Client

	fetchMu sync.Mutex // serialises fetches of this relationship, and its removal
	removed bool       // guarded by fetchMu: nothing fetched is accepted any more

	bundle *spiffebundle.Bundle // last accepted; nil before any; guarded by Fetcher.mu
	status Status               // guarded by Fetcher.mu
	stop   context.CancelFunc   // ends the refresh loop; nil when none runs; guarded by Fetcher.mu
}

// NewFetcher checks cfg and loads each relationship's bundle: the stored
// one if any, else the bootstrap bundle. Nothing is fetched until Run or
// Refresh.
func NewFetcher(cfg FetcherConfig) (*Fetcher, error) {
	setDefault(&cfg.MinRefresh, DefaultMinRefresh)
	setDefault(&cfg.MaxRefresh, DefaultMaxRefresh)
	setDefault(&cfg.DefaultRefresh, DefaultRefresh)
	setDefault(&cfg.RetryMin, DefaultRetryMin)
	setDefault(&cfg.RetryMax, DefaultRetryMax)
	setDefault(&cfg.Timeout, DefaultFetchTimeout)
	setDefault(&cfg.StaticReload, DefaultStaticReload)
	if cfg.MinRefresh > cfg.MaxRefresh {
		return nil, fmt.Errorf("federation: minimum refresh %v is above the maximum %v", cfg.MinRefresh, cfg.MaxRefresh)
	}
	f := &Fetcher{cfg: cfg, log: cfg.Log, changed: make(chan struct{}), static: map[spiffeid.TrustDomain]staticBundle{}}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	seen := map[spiffeid.TrustDomain]bool{}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	for _, rel := range cfg.Relationships {
		if err := f.checkRelationship(rel); err != nil {
			return nil, err
		}
		if seen[rel.TrustDomain] {
			return nil, fmt.Errorf("federation: trust domain %q is configured twice", rel.TrustDomain.Name())
		}
		seen[rel.TrustDomain] = true
		b, err := f.initialBundle(ctx, rel)
		if err != nil {
			return nil, err
		}
		rs := f.newRelState(rel, false)
		f.setBundle(rs, b)
		f.rels = append(f.rels, rs)
	}
	if err := f.loadDynamic(ctx); err != nil {
		return nil, err
	}
	if err := f.loadStatic(ctx); err != nil {
		return nil, err
	}
	return f, nil
}

// newRelState returns the state of rel before any bundle.
func (f *Fetcher) newRelState(rel Relationship, dynamic bool) *relState {
	rs := &relState{rel: rel, dynamic: dynamic}
	rs.status = Status{TrustDomain: rel.TrustDomain, URL: rel.URL, Profile: rel.Profile, EndpointID: rel.EndpointID, Dynamic: dynamic}
	rs.client = f.newClient(rs)
	return rs
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

func (f *Fetcher) checkRelationship(rel Relationship) error {
	td := rel.TrustDomain
	if td.IsZero() {
		return errors.New("federation: a relationship has no trust domain")
	}
	if td == f.cfg.TrustDomain {
		return fmt.Errorf("federation: cannot federate with our own trust domain %q", td.Name())
	}
	if err := checkURL(rel.URL); err != nil {
		return fmt.Errorf("federation: %s: %w", td.Name(), err)
	}
	switch rel.Profile {
	case ProfileHTTPSWeb:
		if !rel.EndpointID.IsZero() {
			return fmt.Errorf("federation: %s: an endpoint SPIFFE ID is for the https_spiffe profile only", td.Name())
		}
	case ProfileHTTPSSPIFFE:
		if rel.EndpointID.IsZero() {
			return fmt.Errorf("federation: %s: https_spiffe needs the endpoint's SPIFFE ID", td.Name())
		}
		if rel.EndpointID.TrustDomain() != td {
			return fmt.Errorf("federation: %s: endpoint SPIFFE ID %q is not in trust domain %q", td.Name(), rel.EndpointID, td.Name())
		}
	default:
		return fmt.Errorf("federation: %s: profile %q is not %q or %q", td.Name(), rel.Profile, ProfileHTTPSWeb, ProfileHTTPSSPIFFE)
	}
	return nil
}

// initialBundle returns the stored bundle of rel, or its bootstrap bundle,
// or nil (https_web only).
func (f *Fetcher) initialBundle(ctx context.Context, rel Relationship) (*spiffebundle.Bundle, error) {
	td := rel.TrustDomain
	if f.cfg.Store != nil {
		data, err := f.cfg.Store.GetKV(ctx, KVPrefix+td.Name())
		switch {
		case err == nil && len(data) == 0: // cleared when a dynamic relationship was deleted
		case err == nil:
			b, err := ParseBundle(td, data)
			if err != nil {
				return nil, fmt.Errorf("federation: %s: stored bundle: %w", td.Name(), err)
			}
			f.log.Info("Loaded stored federated bundle", "trust_domain", td.Name(), "x509_authorities", len(b.X509Authorities()))
			return b, nil
		case !errors.Is(err, datastore.ErrNotFound):
			return nil, fmt.Errorf("federation: %s: read stored bundle: %w", td.Name(), err)
		}
	}
	b := rel.TrustBundle
	if b == nil && rel.TrustBundlePath != "" {
		var err error
		if b, err = LoadBundleFile(td, rel.TrustBundlePath, rel.TrustBundleFormat); err != nil {
			return nil, fmt.Errorf("federation: %s: %w", td.Name(), err)
		}
	}
	if b != nil {
		if b.TrustDomain() != td {
			return nil, fmt.Errorf("federation: %s: the trust bundle is for %q", td.Name(), b.TrustDomain().Name())
		}
		if err := checkAuthorities(td, b.X509Authorities()); err != nil {
			return nil, fmt.Errorf("federation: %s: trust bundle: %w", td.Name(), err)
		}
		return b.Clone(), nil
	}
	if rel.Profile == ProfileHTTPSSPIFFE {
		return nil, fmt.Errorf("federation: %s: https_spiffe needs a trust bundle of %q to authenticate the endpoint with", td.Name(), td.Name())
	}
	return nil, nil
}

// Run refreshes every relationship until ctx is done: at once, then after
// each success at the bundle's clamped refresh hint, after each failure
// with a doubling delay.
func (f *Fetcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	f.mu.Lock()
	f.runCtx = ctx
	for _, rs := range f.rels {
		f.startLocked(rs)
	}
	f.mu.Unlock()
	if f.cfg.Store != nil {
		wg.Go(func() {
			t := time.NewTicker(f.cfg.StaticReload)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				if err := f.ReloadDynamic(ctx); err != nil && ctx.Err() == nil {
					f.log.Warn("Reloading dynamic federation relationships failed", "error", err)
				}
				if err := f.ReloadStatic(ctx); err != nil && ctx.Err() == nil {
					f.log.Warn("Reloading static federated bundles failed", "error", err)
				}
			}
		})
	}
	wg.Wait()
	<-ctx.Done()
	f.mu.Lock()
	f.runCtx = nil // no loop starts any more
	f.mu.Unlock()
	f.loops.Wait()
	return nil
}

// startLocked starts the refresh loop of rs once Run runs; f.mu must be
// held.
func (f *Fetcher) startLocked(rs *relState) {
	if f.runCtx == nil || f.runCtx.Err() != nil || rs.stop != nil {
		return
	}
	ctx, cancel := context.WithCancel(f.runCtx)
	rs.stop = cancel
	f.loops.Go(func() { f.loop(ctx, rs) })
}

func (f *Fetcher) loop(ctx context.Context, rs *relState) {
	failures := 0
	for {
		err := f.refresh(ctx, rs)
		if ctx.Err() != nil {
			return
		}
		f.mu.Lock()
		wait := f.interval(rs.bundle)
		if err != nil {
			failures++
			wait = min(f.backoff(failures), wait)
		} else {
			failures = 0
		}
		rs.status.NextRefresh = time.Now().Add(wait)
		f.mu.Unlock()
		if err != nil {
			f.log.Warn("Federated bundle refresh failed", "trust_domain", rs.rel.TrustDomain.Name(),
				"url", rs.rel.URL, "error", err, "retry_in", wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (f *Fetcher) backoff(failures int) time.Duration {
	d := f.cfg.RetryMin
	for i := 1; i < failures && d < f.cfg.RetryMax; i++ {
		d *= 2
	}
	return min(d, f.cfg.RetryMax)
}

// interval returns b's refresh hint clamped to [MinRefresh, MaxRefresh].
func (f *Fetcher) interval(b *spiffebundle.Bundle) time.Duration {
	d := f.cfg.DefaultRefresh
	if b != nil {
		if h, ok := b.RefreshHint(); ok {
			d = h
		}
	}
	return min(max(d, f.cfg.MinRefresh), f.cfg.MaxRefresh)
}

// Refresh fetches the bundle of td now and returns why it was rejected,
// if it was.
func (f *Fetcher) Refresh(ctx context.Context, td spiffeid.TrustDomain) error {
	rs := f.rel(td)
	if rs == nil {
		if f.hasStatic(td) {
			return fmt.Errorf("federation: the bundle of %q was set by an operator and has no endpoint to fetch from", td.Name())
		}
		return fmt.Errorf("federation: %q: %w", td.Name(), ErrUnknownTrustDomain)
	}
	return f.refresh(ctx, rs)
}

func (f *Fetcher) rel(td spiffeid.TrustDomain) *relState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.relLocked(td)
}

func (f *Fetcher) relLocked(td spiffeid.TrustDomain) *relState {
	for _, rs := range f.rels {
		if rs.rel.TrustDomain == td {
			return rs
		}
	}
	return nil
}

func (f *Fetcher) refresh(ctx context.Context, rs *relState) error {
	rs.fetchMu.Lock()
	defer rs.fetchMu.Unlock()
	td := rs.rel.TrustDomain
	started := time.Now()
	b, err := f.fetch(ctx, rs)
	if err == nil {
		err = f.accept(ctx, rs, b)
	}
	f.mu.Lock()
	rs.status.LastAttempt = started
	if err != nil {
		rs.status.LastError = err.Error()
	} else {
		rs.status.LastError, rs.status.LastSuccess = "", started
	}
	f.mu.Unlock()
	if f.cfg.OnRefresh != nil {
		f.cfg.OnRefresh(td, started, err)
	}
	if err != nil {
		return fmt.Errorf("federation: %s: %w", td.Name(), err)
	}
	return nil
}

// fetch downloads and parses the bundle of rs.
func (f *Fetcher) fetch(ctx context.Context, rs *relState) (*spiffebundle.Bundle, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rs.rel.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch bundle: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := rs.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch bundle: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch bundle: %s answered %q, want 200", rs.rel.URL, resp.Status)
	}
	if resp.ContentLength > MaxBundleSize {
		return nil, fmt.Errorf("fetch bundle: response of %d bytes is larger than the limit of %d", resp.ContentLength, MaxBundleSize)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxBundleSize+1))
	if err != nil {
		return nil, fmt.Errorf("fetch bundle: read: %w", err)
	}
	if len(data) > MaxBundleSize {
		return nil, fmt.Errorf("fetch bundle: response is larger than the limit of %d bytes", MaxBundleSize)
	}
	return ParseBundle(rs.rel.TrustDomain, data)
}

// accept installs b as rs's bundle unless it rolls the sequence back.
func (f *Fetcher) accept(ctx context.Context, rs *relState, b *spiffebundle.Bundle) error {
	if rs.removed {
		return errRemoved
	}
	f.mu.Lock()
	prev := rs.bundle
	f.mu.Unlock()
	if err := checkSequence(prev, b); err != nil {
		return err
	}
	if prev != nil && prev.Equal(b) {
		return nil
	}
	if err := f.persist(ctx, rs.rel.TrustDomain, b); err != nil {
		// Serving the newer bundle matters more; the next change retries.
		f.log.Error("Cannot persist federated bundle", "trust_domain", rs.rel.TrustDomain.Name(), "error", err)
	}
	f.setBundle(rs, b)
	return nil
}

// checkSequence returns why next may not replace prev: a lower
// spiffe_sequence, none after one was accepted, or other keys under the
// same sequence.
func checkSequence(prev, next *spiffebundle.Bundle) error {
	if prev == nil {
		return nil
	}
	ps, ok := prev.SequenceNumber()
	if !ok {
		return nil
	}
	ns, ok := next.SequenceNumber()
	switch {
	case !ok:
		return fmt.Errorf("bundle has no spiffe_sequence, but sequence %d was accepted before", ps)
	case ns < ps:
		return fmt.Errorf("spiffe_sequence rolled back from %d to %d", ps, ns)
	case ns == ps && !sameKeys(prev, next):
		return fmt.Errorf("bundle keys changed but spiffe_sequence stayed %d", ps)
	}
	return nil
}

func (f *Fetcher) persist(ctx context.Context, td spiffeid.TrustDomain, b *spiffebundle.Bundle) error {
	if f.cfg.Store == nil {
		return nil
	}
	data, err := MarshalBundle(b)
	if err != nil {
		return err
	}
	return f.cfg.Store.PutKV(ctx, KVPrefix+td.Name(), data)
}

// setBundle installs b (nil allowed) and signals a change of keys.
func (f *Fetcher) setBundle(rs *relState, b *spiffebundle.Bundle) {
	f.mu.Lock()
	defer f.mu.Unlock()
	prev := rs.bundle
	rs.bundle = b
	st := &rs.status
	st.HasBundle = b != nil
	st.Revoked, st.X509Authorities, st.HasSequence, st.Sequence = false, 0, false, 0
	if b != nil {
		st.Revoked = b.Empty()
		st.X509Authorities = len(b.X509Authorities())
		st.Sequence, st.HasSequence = b.SequenceNumber()
	}
	st.RefreshInterval = f.interval(b)
	if (prev == nil) == (b == nil) && (b == nil || sameKeys(prev, b)) {
		return
	}
	td := rs.rel.TrustDomain.Name()
	switch {
	case b == nil:
	case b.Empty():
		f.log.Warn("Federated trust domain revoked: its bundle is empty", "trust_domain", td, "sequence", st.Sequence)
	default:
		f.log.Info("Federated bundle updated", "trust_domain", td, "x509_authorities", st.X509Authorities,
			"jwt_authorities", len(b.JWTAuthorities()), "sequence", st.Sequence)
	}
	f.signalLocked()
}

// signalLocked wakes the waiters of Changed; f.mu must be held.
func (f *Fetcher) signalLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}
