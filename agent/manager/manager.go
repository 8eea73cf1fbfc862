// Package manager keeps the agent's cache current: it holds the push
// stream of entries and bundles from the server (reconnecting with backoff,
// and resuming with only what changed since its last stream), mints
// workload SVIDs in batches (the agent generates keys, the server signs
// CSRs) and rotates them at half-life.
//
// It must not import the Workload API or SDS packages.
package manager

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hallmarkid/hallmark/agent/cache"
	"github.com/hallmarkid/hallmark/agent/client"
	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/internal/apiconv"
	"github.com/hallmarkid/hallmark/internal/busy"
	"github.com/hallmarkid/hallmark/internal/x509util"
	"github.com/hallmarkid/hallmark/registration"
)

// Server is the part of the server connection the manager needs.
type Server interface {
	Sync(ctx context.Context, req *apiv1.SyncRequest) (grpc.ServerStreamingClient[apiv1.SyncResponse], error)
	BatchSign(ctx context.Context, reqs []*apiv1.SVIDRequest) ([]*apiv1.SVIDResult, error)
	SetBundle(certs []*x509.Certificate)
}

// Config configures a Manager.
type Config struct {
	Server      Server
	Cache       *cache.Cache
	TrustDomain spiffeid.TrustDomain
	// BatchSize bounds SVIDs per signing call (default DefaultBatchSize).
	BatchSize int
	// PublishEvery is how often a long minting round wakes the cache's
	// readers (default DefaultPublishEvery); a round always ends with one.
	PublishEvery time.Duration
	// OnBundle is called with every new bundle (e.g. to persist it).
	OnBundle func([]*x509.Certificate)
	// OnEvicted is called when the server says the agent is not attested.
	OnEvicted func(error)
	// OnTainted is called with the subject key IDs of the authorities an
	// operator tainted, with every bundle (e.g. to renew the agent SVID).
	OnTainted func(keyIDs [][]byte)
	// OnSVIDs, when set, is told how many workload SVIDs each signing
	// round brought (hallmark_workload_svid_rotations_total).
	OnSVIDs func(n int)
	Log     *slog.Logger
	Clock   func() time.Time

	// JWT, when set, receives the JWT bundle pushed by the server.
	JWT *cache.JWTStore
}

// Manager runs the sync and mint loops.
type Manager struct {
	cfg       Config
	mintKick  chan struct{}
	connected atomic.Bool
	// holdOff maps entry IDs whose signing failed to when to try again;
	// only the mint loop touches it.
	holdOff map[string]time.Time
	// revision is the revision the cache's entries are current to, 0
	// before the first snapshot was applied; only the sync loop writes it.
	revision atomic.Int64
}

// DefaultBatchSize is the default number of SVIDs per signing call. A
// batch's answer (about 700 bytes per SVID) then stays under 32 KiB, the
// largest of gRPC's pooled receive buffers below 1 MiB: bigger answers are
// read into 1 MiB buffers that the pool keeps, and together with the keys
// and CSRs of a large batch in flight they raised the agent's resident
// memory by several MiB at 1,000 SVIDs. Minting 10,000 SVIDs takes a few
// per cent longer than with batches of 500.
const DefaultBatchSize = 32

// MaxResumeEntries is the most entries the manager lists when it resumes
// a stream; beyond it, it asks for a full snapshot (the list would be
// larger than the snapshot is worth avoiding).
const MaxResumeEntries = 50000

// New returns a manager.
func New(cfg Config) *Manager {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.PublishEvery <= 0 {
		cfg.PublishEvery = DefaultPublishEvery
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return &Manager{cfg: cfg, mintKick: make(chan struct{}, 1), holdOff: make(map[string]time.Time)}
}

// Connected reports whether the push stream is up.
func (m *Manager) Connected() bool { return m.connected.Load() }

// Run runs until ctx is done.
func (m *Manager) Run(ctx context.Context) error {
	go m.mintLoop(ctx)
	var backoff Backoff
	for ctx.Err() == nil {
		start := m.cfg.Clock()
		stopWindow, stopped, err := m.syncOnce(ctx)
		m.connected.Store(false)
		if ctx.Err() != nil {
			return nil
		}
		if status.Code(err) == codes.PermissionDenied && m.cfg.OnEvicted != nil {
			m.cfg.OnEvicted(err)
		}
		if m.cfg.Clock().Sub(start) > time.Minute {
			backoff.Reset()
		}
		var wait time.Duration
		if stopped {
			// The server is stopping and asked its agents to spread
			// their reconnects over stopWindow.
			wait = backoff.AfterStop(stopWindow)
			m.cfg.Log.Info("Server stopping; reconnecting, serving cached SVIDs meanwhile", "retry_in", wait, "spread_over", stopWindow)
		} else {
			wait = backoff.After(err)
			m.cfg.Log.Warn("Entry stream from server lost; serving cached SVIDs", "error", err, "retry_in", wait)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
	return nil
}

// Revision returns the revision the cached entries are current to (0
// before the first snapshot).
func (m *Manager) Revision() int64 { return m.revision.Load() }

// syncRequest asks for a full snapshot the first time and, once the cache
// holds a snapshot, resumes from its revision so that the server sends
// only what changed: unchanged entries keep their SVIDs either way.
func (m *Manager) syncRequest() *apiv1.SyncRequest {
	rev := m.revision.Load()
	if rev <= 0 {
		return &apiv1.SyncRequest{}
	}
	ids := m.cfg.Cache.EntryIDs()
	if len(ids) > MaxResumeEntries {
		return &apiv1.SyncRequest{}
	}
	return &apiv1.SyncRequest{SinceRevision: rev, HeldEntryIds: ids}
}

// syncOnce holds one stream until it ends; stopped reports that the
// server ended it because it is stopping, asking for reconnects spread
// over stopWindow (its trailer: internal/busy).
func (m *Manager) syncOnce(ctx context.Context) (stopWindow time.Duration, stopped bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req := m.syncRequest()
	stream, err := m.cfg.Server.Sync(ctx, req)
	if err != nil {
		return 0, false, err
	}
	for first := true; ; first = false {
		msg, err := stream.Recv()
		if err != nil {
			if status.Code(err) == codes.Unavailable {
				stopWindow, stopped = busy.StopWindow(stream.Trailer())
			}
			return stopWindow, stopped, err
		}
		if first && !msg.GetFull() && !msg.GetResumed() {
			// Every first message is a snapshot or a resumption; anything
			// else leaves the cache in an unknown state.
			return 0, false, errors.New("manager: first sync message is neither a snapshot nor a resumption")
		}
		if !m.connected.Swap(true) {
			m.cfg.Log.Info("Entry stream from server established", "resumed", msg.GetResumed(),
				"since_revision", req.GetSinceRevision(), "upserts", len(msg.GetUpserts()), "deleted", len(msg.GetDeletedIds()))
		}
		m.apply(msg)
	}
}

// apply applies one sync message to the cache.
func (m *Manager) apply(msg *apiv1.SyncResponse) {
	if b := msg.GetBundle(); b != nil {
		certs, err := x509util.ParseChain(b.GetX509Authorities())
		if err != nil {
			m.cfg.Log.Error("Ignoring malformed bundle from server", "error", err)
		} else {
			m.cfg.Server.SetBundle(certs)
			m.cfg.Cache.SetBundle(&cache.Bundle{TrustDomain: m.cfg.TrustDomain, Certs: certs, DER: x509util.ConcatDER(certs)})
			if m.cfg.OnBundle != nil {
				m.cfg.OnBundle(certs)
			}
			tainted := b.GetTaintedAuthorityKeyIds()
			if n := m.cfg.Cache.SetTainted(tainted); n > 0 {
				m.cfg.Log.Warn("Re-minting SVIDs signed by a tainted authority", "svids", n)
				m.KickMint()
			}
			if m.cfg.OnTainted != nil && len(tainted) > 0 {
				m.cfg.OnTainted(tainted)
			}
		}
	}
	if jb := msg.GetJwtBundle(); jb != nil && m.cfg.JWT != nil {
		if b, err := client.ParseJWTBundle(m.cfg.TrustDomain, jb); err != nil {
			m.cfg.Log.Error("Ignoring malformed JWT bundle from server", "error", err)
		} else {
			m.cfg.JWT.SetBundle(b)
			if n := m.cfg.JWT.DropSignedBy(jb.GetTaintedKeyIds()); n > 0 {
				m.cfg.Log.Warn("Dropped cached JWT-SVIDs signed by a tainted key", "tokens", n)
			}
		}
	}
	if msg.GetFederatedComplete() || len(msg.GetFederatedBundles()) > 0 {
		m.cfg.Cache.SetFederatedBundles(msg.GetFederatedComplete(), m.federatedBundles(msg.GetFederatedBundles()))
	}
	if msg.GetFull() || msg.GetResumed() || len(msg.GetUpserts()) > 0 || len(msg.GetDeletedIds()) > 0 {
		upserts := make([]registration.Entry, 0, len(msg.GetUpserts()))
		for _, p := range msg.GetUpserts() {
			e, err := apiconv.EntryFromProto(p)
			if err != nil {
				m.cfg.Log.Error("Ignoring malformed entry from server", "entry_id", p.GetId(), "error", err)
				continue
			}
			upserts = append(upserts, e)
		}
		// A resumption is applied like a delta: the server listed every
		// held entry it no longer authorises in deleted_ids.
		m.cfg.Cache.UpdateEntries(msg.GetFull(), upserts, msg.GetDeletedIds())
		m.KickMint()
	}
	if r := msg.GetRevision(); r > 0 || msg.GetFull() || msg.GetResumed() {
		m.revision.Store(r)
	}
}

// federatedBundles converts federated bundles from the server. One that
// does not parse is dropped (an empty bundle for its trust domain), so a
// workload never keeps trusting keys the server no longer vouches for in a
// form the agent can read. The own trust domain is never federated.
func (m *Manager) federatedBundles(ps []*apiv1.FederatedBundle) []*cache.Bundle {
	out := make([]*cache.Bundle, 0, len(ps))
	for _, p := range ps {
		td, b, err := client.ParseFederatedBundle(p)
		if td.IsZero() || td == m.cfg.TrustDomain {
			m.cfg.Log.Error("Ignoring federated bundle from server", "trust_domain", p.GetTrustDomain(), "error", err)
			continue
		}
		if err != nil {
			m.cfg.Log.Error("Dropping malformed federated bundle from server", "trust_domain", td.Name(), "error", err)
			out = append(out, &cache.Bundle{TrustDomain: td})
			continue
		}
		cb := &cache.Bundle{TrustDomain: td, Certs: b.X509Authorities(), DER: x509util.ConcatDER(b.X509Authorities())}
		if len(b.JWTAuthorities()) > 0 {
			cb.JWT = b.JWTBundle()
		}
		out = append(out, cb)
	}
	return out
}

// KickMint asks the mint loop to look for due SVIDs now.
func (m *Manager) KickMint() {
	select {
	case m.mintKick <- struct{}{}:
	default:
	}
}

func (m *Manager) mintLoop(ctx context.Context) {
	for {
		m.cfg.Cache.DropExpired(m.cfg.Clock())
		due := m.notHeldOff(m.cfg.Cache.Due(m.cfg.Clock()))
		wait := time.Minute
		if len(due) > 0 {
			// A round is bounded, so that entries created while many SVIDs
			// rotate are minted after it (Due lists them first).
			due = due[:min(len(due), MaxRound)]
			if err := m.mintRound(ctx, due); err != nil {
				m.cfg.Log.Warn("Minting SVIDs failed; will retry", "count", len(due), "error", err)
				wait = time.Second
			} else {
				continue // look again: more may have become due
			}
		}
		if next := m.cfg.Cache.NextRotation(); !next.IsZero() {
			if d := next.Sub(m.cfg.Clock()); d < wait {
				wait = max(d, 10*time.Millisecond)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-m.mintKick:
		case <-time.After(wait):
		}
	}
}

// notHeldOff drops entries whose signing failed recently, so one refused
// entry cannot hold up the others.
func (m *Manager) notHeldOff(due []registration.Entry) []registration.Entry {
	if len(m.holdOff) == 0 {
		return due
	}
	now := m.cfg.Clock()
	out := due[:0]
	for _, e := range due {
		if until, ok := m.holdOff[e.ID]; ok && now.Before(until) {
			continue
		}
		delete(m.holdOff, e.ID)
		out = append(out, e)
	}
	return out
}

// MintConcurrency is how many signing calls the agent keeps in flight
// while it mints many SVIDs: the server signs each call's batch on one
// goroutine, so one call at a time left all but one of its cores idle,
// and the agent's key generation for the next batch waited for the
// server's answer to the last.
const MintConcurrency = 4

// MaxRound is the most SVIDs one minting round signs before the mint loop
// looks again at what is due: an entry created during the rotation of
// 10,000 SVIDs waits for one round (about a third of a second on 2 cores),
// not for all of them.
const MaxRound = 1024

// DefaultPublishEvery is how often a long minting round shows its
// progress to watchers: the SVIDs of a round reach the Workload API and SDS
// streams together when the round ends, or every PublishEvery while it
// lasts.
const DefaultPublishEvery = 500 * time.Millisecond

// batchResult is what one signing call brought.
type batchResult struct {
	batch  []registration.Entry
	svids  map[string]*cache.SVID
	failed map[string]string // entry ID → reason
	err    error             // the call failed: nothing in batch was signed
}

// mintRound signs SVIDs for every entry of due, in batches of BatchSize
// with up to MintConcurrency batches in flight, and publishes them to the
// cache's readers once at the end (or every Config.PublishEvery). After a failed
// call no further batch is started. It returns the first error.
func (m *Manager) mintRound(ctx context.Context, due []registration.Entry) error {
	var batches [][]registration.Entry
	for len(due) > 0 {
		n := min(len(due), m.cfg.BatchSize)
		batches, due = append(batches, due[:n:n]), due[n:]
	}
	todo := make(chan []registration.Entry, len(batches))
	for _, b := range batches {
		todo <- b
	}
	close(todo)
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	results := make(chan batchResult)
	workers := min(MintConcurrency, len(batches))
	for range workers {
		go func() {
			for b := range todo {
				if rctx.Err() != nil {
					results <- batchResult{batch: b, err: rctx.Err()}
					continue
				}
				results <- m.mintBatch(rctx, b)
			}
		}()
	}
	defer m.cfg.Cache.Publish()
	published := m.cfg.Clock()
	var firstErr error
	for range batches {
		r := <-results
		if r.err != nil {
			if firstErr == nil {
				firstErr = r.err
			}
			stop() // the server is unreachable or refusing: start no more
			continue
		}
		now := m.cfg.Clock()
		for id := range r.failed {
			m.holdOff[id] = now.Add(5 * time.Second)
		}
		m.cfg.Cache.StageSVIDs(r.svids)
		if m.cfg.OnSVIDs != nil {
			m.cfg.OnSVIDs(len(r.svids))
		}
		if now.Sub(published) >= m.cfg.PublishEvery {
			m.cfg.Cache.Publish()
			published = now
		}
		if len(r.failed) > 0 && firstErr == nil {
			for id, why := range r.failed {
				firstErr = fmt.Errorf("manager: %d SVIDs not signed, first: %s: %s", len(r.failed), id, why)
				break
			}
		}
	}
	return firstErr
}

// mintBatch generates a key and CSR per entry of batch and has the server
// sign them in one call. Only each key's PKCS#8 form is kept while the
// call is in flight.
func (m *Manager) mintBatch(ctx context.Context, batch []registration.Entry) batchResult {
	n := len(batch)
	keys := make([][]byte, n)
	reqs := make([]*apiv1.SVIDRequest, n)
	for i, e := range batch {
		keyDER, csr, err := newKeyDERAndCSR()
		if err != nil {
			return batchResult{batch: batch, err: err}
		}
		keys[i] = keyDER
		reqs[i] = &apiv1.SVIDRequest{EntryId: e.ID, Csr: csr}
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	results, err := m.cfg.Server.BatchSign(cctx, reqs)
	cancel()
	if err != nil {
		return batchResult{batch: batch, err: err}
	}
	now := m.cfg.Clock()
	out := batchResult{batch: batch, svids: make(map[string]*cache.SVID, n)}
	fail := func(id, why string) {
		if out.failed == nil {
			out.failed = make(map[string]string)
		}
		out.failed[id] = why
	}
	for i, r := range results {
		if i >= n {
			break
		}
		if r.GetError() != "" || r.GetSvid() == nil {
			fail(batch[i].ID, r.GetError())
			continue
		}
		s, err := toSVID(batch[i], keys[i], r.GetSvid(), now)
		if err != nil {
			fail(batch[i].ID, err.Error())
			continue
		}
		out.svids[batch[i].ID] = s
	}
	return out
}

// toSVID checks a signed chain and keeps its DER form only: the parsed
// certificates and the protobuf message that carried them are garbage
// once it returns.
func toSVID(e registration.Entry, keyDER []byte, p *apiv1.X509SVID, now time.Time) (*cache.SVID, error) {
	ders := p.GetCertChain()
	certs, err := x509util.ParseChain(ders)
	if err != nil {
		return nil, fmt.Errorf("malformed SVID: %w", err)
	}
	if len(certs[0].URIs) != 1 || certs[0].URIs[0].String() != e.SPIFFEID.String() {
		return nil, errors.New("server signed an SVID for another SPIFFE ID")
	}
	size := 0
	for _, d := range ders {
		size += len(d)
	}
	chain := make([]byte, 0, size)
	for _, d := range ders {
		chain = append(chain, d...)
	}
	return &cache.SVID{
		ID: e.SPIFFEID, CertsDER: chain, KeyDER: keyDER,
		ExpiresAt: certs[0].NotAfter, IssuedAt: now, EntryRevision: e.Revision, IssuerKeyID: string(certs[0].AuthorityKeyId),
	}, nil
}
