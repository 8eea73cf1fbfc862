package nodeapi

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/attestors"
	"github.com/hallmarkid/hallmark/internal/apiconv"
	"github.com/hallmarkid/hallmark/internal/x509util"
	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/ca"
	"github.com/hallmarkid/hallmark/server/datastore"
	"github.com/hallmarkid/hallmark/server/entrycache"
)

// Signer issues SVIDs and publishes the trust bundle.
type Signer interface {
	SignX509SVID(ctx context.Context, p ca.X509SVIDParams) ([]*x509.Certificate, error)
	Bundle() []*x509.Certificate
}

// AgentStore is the part of the datastore the node API needs.
type AgentStore interface {
	CreateAgent(ctx context.Context, a datastore.Agent) error
	UpdateAgent(ctx context.Context, a datastore.Agent) error
	GetAgent(ctx context.Context, id string) (datastore.Agent, error)
	DeleteAgent(ctx context.Context, id string) error
	PromoteAgentSerial(ctx context.Context, id, serial string) error
}

// Auditor records security decisions. Implementations must not block long.
type Auditor interface {
	Record(ctx context.Context, kind string, fields map[string]any)
}

// Metrics receives counts and latencies; *telemetry.Metrics satisfies it.
type Metrics interface {
	Attestation(attestor, result string)
	SVIDIssued(kind string, took time.Duration)
	ObservePropagation(lag time.Duration)
}

type nopMetrics struct{}

func (nopMetrics) Attestation(string, string)       {}
func (nopMetrics) SVIDIssued(string, time.Duration) {}
func (nopMetrics) ObservePropagation(time.Duration) {}

// Reattester is an optional power of a verifier doing continuous
// attestation (TPM): every renewal must carry fresh evidence, and the agent
// SVID lives at most twice the interval so the agent renews — and proves
// its state again — at least that often. Zero means "at every renewal"
// with no extra bound on the SVID lifetime.
type Reattester interface {
	ReattestInterval() time.Duration
}

// Config configures a Server.
type Config struct {
	TrustDomain    spiffeid.TrustDomain
	Signer         Signer
	Agents         AgentStore
	Entries        *entrycache.Cache
	Verifiers      []attestors.NodeVerifier
	AgentSVIDTTL   time.Duration
	DefaultSVIDTTL time.Duration
	// AttestTimeout bounds one attestation, challenges included.
	AttestTimeout time.Duration
	// FirstMessageTimeout bounds the wait for an attestation's first
	// message (default 10 s, at most AttestTimeout).
	FirstMessageTimeout time.Duration
	// BundleChanged, when set, returns a channel closed at the next bundle change.
	BundleChanged func() <-chan struct{}
	Audit         Auditor
	Metrics       Metrics
	Log           *slog.Logger
	Clock         func() time.Time

	// JWTSigner, when set, signs JWT-SVIDs (NewJWTSVID) and its keys are
	// pushed to agents in Sync. Without it NewJWTSVID is Unimplemented.
	JWTSigner JWTSigner

	// OutageGrace bounds how long the last agent record read from the
	// datastore is used while the datastore fails, so that agents keep
	// getting SVIDs through a short database outage. 0 means
	// DefaultOutageGrace; negative disables it (fail at once).
	OutageGrace time.Duration

	// SigningConcurrency bounds the BatchSignX509SVID calls that sign at
	// once; the others wait their turn (until their deadline). Signing is
	// CPU-bound: more at once only makes every batch finish later. Zero
	// means GOMAXPROCS.
	SigningConcurrency int

	// Federation, when set, is the set of federated bundles pushed to
	// agents in Sync: all of them, since bundles are public and agents
	// hand each workload only those its entries federate with. Nil means
	// none. Pass a nil interface, not a typed nil pointer.
	Federation FederationSource
}

// Server implements apiv1.NodeServer.
type Server struct {
	apiv1.UnimplementedNodeServer
	cfg       Config
	verifiers map[string]attestors.NodeVerifier

	mu      sync.Mutex // guards streams
	streams map[string]map[*agentStream]struct{}

	stopping   chan struct{} // closed by EndStreams
	stopOnce   sync.Once
	stopWindow atomic.Int64 // EndStreams' reconnect window (time.Duration)

	// signSlots bounds the BatchSignX509SVID calls signing at once
	// (Config.SigningConcurrency).
	signSlots chan struct{}

	fed fedCache

	records *records
}

type agentStream struct {
	kick chan struct{} // agent record changed: reload selectors
	stop context.CancelFunc
}

// New returns a node API server.
func New(cfg Config) (*Server, error) {
	if cfg.Signer == nil || cfg.Agents == nil || cfg.Entries == nil {
		return nil, errors.New("nodeapi: signer, agent store and entry cache are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.AttestTimeout == 0 {
		cfg.AttestTimeout = 30 * time.Second
	}
	if cfg.FirstMessageTimeout == 0 {
		cfg.FirstMessageTimeout = min(10*time.Second, cfg.AttestTimeout)
	}
	if cfg.Audit == nil {
		cfg.Audit = nopAudit{}
	}
	if cfg.Metrics == nil {
		cfg.Metrics = nopMetrics{}
	}
	if cfg.OutageGrace == 0 {
		cfg.OutageGrace = DefaultOutageGrace
	}
	if cfg.SigningConcurrency <= 0 {
		cfg.SigningConcurrency = runtime.GOMAXPROCS(0)
	}
	s := &Server{cfg: cfg, verifiers: make(map[string]attestors.NodeVerifier), streams: make(map[string]map[*agentStream]struct{}),
		records: newRecords(cfg.OutageGrace, cfg.Clock), stopping: make(chan struct{}),
		signSlots: make(chan struct{}, cfg.SigningConcurrency)}
	for _, v := range cfg.Verifiers {
		if _, dup := s.verifiers[v.Type()]; dup {
			return nil, fmt.Errorf("nodeapi: node attestor %q configured twice", v.Type())
		}
		s.verifiers[v.Type()] = v
	}
	return s, nil
}

type nopAudit struct{}

func (nopAudit) Record(context.Context, string, map[string]any) {}

// ServerID returns the server's own SPIFFE ID in td; node entries are
// parented by it.
func ServerID(td spiffeid.TrustDomain) spiffeid.ID {
	return spiffeid.RequireFromSegments(td, "hallmark", "server")
}

// attestStream is the shape shared by Attest and RenewAgent.
type attestStream interface {
	Send(*apiv1.AttestResponse) error
	Recv() (*apiv1.AttestRequest, error)
	Context() context.Context
}

// Attest implements node attestation.
func (s *Server) Attest(stream apiv1.Node_AttestServer) error {
	return s.attest(stream, spiffeid.ID{})
}

// RenewAgent renews the calling agent's SVID. The caller must present the
// SVID its record names, like every other Node API call: a superseded
// (rotated-out, stolen) SVID, a banned or evicted agent, or a workload
// SVID naming an agent gets nothing, and changes nothing.
func (s *Server) RenewAgent(stream apiv1.Node_RenewAgentServer) error {
	agentID, err := s.callerAgent(stream.Context())
	if err != nil {
		return err
	}
	return s.attest(stream, agentID)
}

func (s *Server) attest(stream attestStream, current spiffeid.ID) (err error) {
	ctx, cancel := context.WithTimeout(stream.Context(), s.cfg.AttestTimeout)
	defer cancel()
	renewal := !current.IsZero()
	log := s.cfg.Log.With("renewal", renewal)
	audit := map[string]any{"renewal": renewal}
	if p, ok := peer.FromContext(ctx); ok {
		audit["peer"] = p.Addr.String()
	}
	defer func() {
		if err != nil {
			audit["result"] = "rejected"
			audit["reason"] = status.Convert(err).Message()
			log.Warn("Attestation rejected", "reason", audit["reason"], "attestor", audit["attestor"], "agent_id", audit["agent_id"])
		} else {
			audit["result"] = "accepted"
			log.Info("Agent attested", "attestor", audit["attestor"], "agent_id", audit["agent_id"])
		}
		attestor, _ := audit["attestor"].(string)
		s.cfg.Metrics.Attestation(attestor, audit["result"].(string))
		s.cfg.Audit.Record(ctx, "attestation", audit)
	}()

	var (
		existing     datastore.Agent
		callerSerial string // of the SVID a renewing agent presented
	)
	if renewal {
		// Before reading anything from the caller: its SVID must be one
		// its record names, and the agent neither evicted nor banned.
		audit["agent_id"] = current.String()
		var leaf *x509.Certificate
		if existing, leaf, err = s.callerRecord(ctx); err != nil {
			return err
		}
		callerSerial = leaf.SerialNumber.String()
		audit["attestor"] = existing.AttestationType
	}

	first, err := s.recvFirst(ctx, stream)
	if err != nil {
		return err
	}
	params := first.GetParams()
	if params == nil {
		return status.Error(codes.InvalidArgument, "first message must carry attestation parameters")
	}
	csr, err := ca.ParseCSR(params.GetCsr())
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "CSR: %v", err)
	}

	var res attestors.Result
	data := params.GetData()
	switch {
	case renewal && data == nil:
		if _, ok := s.verifiers[existing.AttestationType].(Reattester); ok {
			return status.Errorf(codes.PermissionDenied, "attestor %q requires fresh evidence at every renewal", existing.AttestationType)
		}
		res = attestors.Result{AgentID: current, Selectors: existing.Selectors, CanReattest: existing.CanReattest}
	default:
		if data == nil {
			return status.Error(codes.InvalidArgument, "attestation data missing")
		}
		audit["attestor"] = data.GetType()
		if renewal && data.GetType() != existing.AttestationType {
			return status.Errorf(codes.PermissionDenied, "renewal with attestor %q, agent attested with %q", data.GetType(), existing.AttestationType)
		}
		v, ok := s.verifiers[data.GetType()]
		if !ok {
			return status.Errorf(codes.InvalidArgument, "node attestor %q is not enabled on this server", data.GetType())
		}
		res, err = v.Verify(ctx, attestors.VerifyRequest{
			Payload:     data.GetPayload(),
			Challenge:   challengeFunc(stream),
			AgentKey:    csr.PublicKey,
			TrustDomain: s.cfg.TrustDomain,
			Renewal:     renewal,
			CurrentID:   current,
		})
		for k, v := range res.Evidence {
			audit["evidence."+k] = v
		}
		if err == nil && renewal && res.AgentID != current {
			// Valid evidence of another node, from the holder of this
			// agent's current key: the key is not where it was attested.
			err = attestors.Rejected(fmt.Errorf("re-attestation yielded agent ID %s", res.AgentID))
		}
		if err != nil {
			// Only the holder of the agent's newest SVID can get it
			// evicted: the older one, still valid while the agent has not
			// used a renewal's answer, may be a copy.
			if renewal && attestors.ProvedFalse(err) && existing.NewSerialNumber == "" {
				// Continuous attestation failed: the node sent evidence
				// and it no longer proves what it proved. Fail closed:
				// evict it at once, so neither its open streams nor its
				// current SVID get anything more. Anything else (a dropped
				// connection, a timeout mid-challenge, an upstream service
				// down) refuses this renewal and changes nothing.
				s.evictAfterFailedReattestation(current, err)
				audit["evicted"] = true
			}
			return status.Errorf(codes.PermissionDenied, "attestation failed: %v", err)
		}
	}
	audit["agent_id"] = res.AgentID.String()
	audit["selectors"] = selectorStrings(res.Selectors)
	if err := s.checkAgentID(res.AgentID); err != nil {
		return status.Errorf(codes.Internal, "%v", err)
	}
	if !renewal {
		// A banned agent attests in vain: refuse before signing anything.
		// (storeAgent checks again, atomically.)
		if rec, err := s.cfg.Agents.GetAgent(ctx, res.AgentID.String()); err == nil && rec.Banned {
			return bannedError(res.AgentID.String())
		}
	}

	ttl := s.cfg.AgentSVIDTTL
	if r, ok := s.verifiers[firstNonEmpty(data.GetType(), existing.AttestationType)].(Reattester); ok {
		if iv := r.ReattestInterval(); iv > 0 && 2*iv < ttl {
			ttl = 2 * iv
		}
	}
	signStart := time.Now()
	certs, err := s.cfg.Signer.SignX509SVID(ctx, ca.X509SVIDParams{ID: res.AgentID, PublicKey: csr.PublicKey, TTL: ttl})
	if err != nil {
		return status.Errorf(codes.Internal, "sign agent SVID: %v", err)
	}
	s.cfg.Metrics.SVIDIssued("agent", time.Since(signStart))
	leaf := certs[0]
	now := s.cfg.Clock()
	rec := datastore.Agent{
		ID:              res.AgentID.String(),
		AttestationType: firstNonEmpty(data.GetType(), existing.AttestationType),
		Selectors:       res.Selectors,
		SerialNumber:    leaf.SerialNumber.String(),
		ExpiresAt:       leaf.NotAfter,
		CanReattest:     res.CanReattest,
		UpdatedAt:       now,
	}
	if renewal {
		// The new SVID is pending until the agent uses it; until then the
		// one it renewed with stays valid, so a lost answer is not fatal.
		rec.SerialNumber, rec.NewSerialNumber = callerSerial, leaf.SerialNumber.String()
	}
	if err := s.storeAgent(ctx, rec, renewal, existing); err != nil {
		return err
	}
	audit["serial"] = leaf.SerialNumber.String()
	audit["expires_at"] = leaf.NotAfter.UTC().Format(time.RFC3339)
	s.kickAgent(rec.ID)

	return stream.Send(&apiv1.AttestResponse{Step: &apiv1.AttestResponse_Result{Result: &apiv1.AttestResult{
		Svid:        svidProto(res.AgentID, certs),
		Bundle:      s.bundleProto(),
		Selectors:   apiconv.SelectorsToProto(res.Selectors),
		CanReattest: res.CanReattest,
	}}})
}

func (s *Server) evictAfterFailedReattestation(id spiffeid.ID, cause error) {
	// Not the request's context: the eviction must happen even if the
	// agent hangs up now.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.cfg.Agents.DeleteAgent(ctx, id.String()); err != nil && !errors.Is(err, datastore.ErrNotFound) {
		s.cfg.Log.Error("Evicting agent after failed re-attestation failed", "agent_id", id.String(), "error", err)
		return
	}
	s.AgentEvicted(id.String())
	s.cfg.Log.Warn("Agent evicted: re-attestation failed", "agent_id", id.String(), "reason", cause)
}

func (s *Server) storeAgent(ctx context.Context, rec datastore.Agent, renewal bool, existing datastore.Agent) error {
	if renewal {
		rec.CreatedAt = existing.CreatedAt
		err := s.cfg.Agents.UpdateAgent(ctx, rec)
		switch {
		case errors.Is(err, datastore.ErrBanned):
			return bannedError(rec.ID)
		case err != nil:
			return status.Errorf(codes.PermissionDenied, "update agent: %v", err)
		}
		return nil
	}
	rec.CreatedAt = rec.UpdatedAt
	err := s.cfg.Agents.CreateAgent(ctx, rec)
	if errors.Is(err, datastore.ErrAlreadyExists) {
		old, gerr := s.cfg.Agents.GetAgent(ctx, rec.ID)
		if gerr == nil && old.Banned {
			return bannedError(rec.ID)
		}
		if !rec.CanReattest {
			return status.Errorf(codes.PermissionDenied, "agent %s has already attested; an operator must evict it first", rec.ID)
		}
		if gerr == nil {
			rec.CreatedAt = old.CreatedAt
		}
		err = s.cfg.Agents.UpdateAgent(ctx, rec)
	}
	switch {
	case errors.Is(err, datastore.ErrBanned):
		return bannedError(rec.ID)
	case err != nil:
		return status.Errorf(codes.Internal, "store agent: %v", err)
	}
	return nil
}

// bannedError refuses a banned agent, saying how the ban is lifted.
func bannedError(id string) error {
	return status.Errorf(codes.PermissionDenied, "agent %s is banned; an operator must evict it (lifting the ban) before it can attest again", id)
}

func (s *Server) checkAgentID(id spiffeid.ID) error {
	if id.TrustDomain() != s.cfg.TrustDomain || !strings.HasPrefix(id.Path(), "/agent/") {
		return fmt.Errorf("attestor produced agent ID %q outside spiffe://%s/agent/", id, s.cfg.TrustDomain)
	}
	return nil
}

func challengeFunc(stream attestStream) attestors.ChallengeFunc {
	return func(ctx context.Context, challenge []byte) ([]byte, error) {
		if err := stream.Send(&apiv1.AttestResponse{Step: &apiv1.AttestResponse_Challenge{Challenge: challenge}}); err != nil {
			return nil, fmt.Errorf("send challenge: %w", err)
		}
		type recv struct {
			req *apiv1.AttestRequest
			err error
		}
		ch := make(chan recv, 1)
		go func() {
			req, err := stream.Recv()
			ch <- recv{req, err}
		}()
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for challenge response: %w", ctx.Err())
		case r := <-ch:
			if r.err != nil {
				return nil, fmt.Errorf("receive challenge response: %w", r.err)
			}
			resp := r.req.GetChallengeResponse()
			if resp == nil {
				return nil, errors.New("expected a challenge response")
			}
			return resp, nil
		}
	}
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func selectorStrings(ss []registration.Selector) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.String()
	}
	return out
}

func svidProto(id spiffeid.ID, certs []*x509.Certificate) *apiv1.X509SVID {
	return &apiv1.X509SVID{SpiffeId: id.String(), CertChain: x509util.DERs(certs), ExpiresAt: certs[0].NotAfter.Unix()}
}

// TaintReporter is an optional power of a Signer: the authorities an
// operator tainted, which agents must stop relying on.
type TaintReporter interface {
	TaintedAuthorities() []*x509.Certificate
}

func (s *Server) bundleProto() *apiv1.Bundle {
	b := &apiv1.Bundle{TrustDomain: s.cfg.TrustDomain.Name(), X509Authorities: x509util.DERs(s.cfg.Signer.Bundle())}
	if tr, ok := s.cfg.Signer.(TaintReporter); ok {
		for _, c := range tr.TaintedAuthorities() {
			if len(c.SubjectKeyId) > 0 {
				b.TaintedAuthorityKeyIds = append(b.TaintedAuthorityKeyIds, c.SubjectKeyId)
			}
		}
	}
	return b
}
