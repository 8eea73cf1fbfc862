// Package adminapi serves the operator-facing Admin gRPC API on the server's
// owner-only unix socket: entries, join tokens, agents (list, show, count,
// evict, ban, purge), the bundle, federation (federated bundles and the
// fetcher's relationships), and the local authorities (prepare, activate, taint and revoke the X.509 CA's
// authorities and the JWT signing keys).
//
// It declares the small store interface it needs and must not import
// datastore backends, the server wiring or cmd/.
package adminapi

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/attestors/jointoken"
	"github.com/hallmarkid/hallmark/internal/apiconv"
	"github.com/hallmarkid/hallmark/internal/x509util"
	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/datastore"
	"github.com/hallmarkid/hallmark/server/entrycache"
	"github.com/hallmarkid/hallmark/server/federation"
)

// Store is the part of the datastore the admin API needs.
type Store interface {
	CreateEntries(ctx context.Context, entries []registration.Entry) ([]datastore.CreateResult, error)
	UpdateEntry(ctx context.Context, e registration.Entry) (registration.Entry, error)
	DeleteEntry(ctx context.Context, id string) (registration.Entry, error)
	CreateJoinToken(ctx context.Context, t datastore.JoinToken) error
	ListAgents(ctx context.Context) ([]datastore.Agent, error)
	GetAgent(ctx context.Context, id string) (datastore.Agent, error)
	DeleteAgent(ctx context.Context, id string) error
	BanAgent(ctx context.Context, id string) error
	Ping(ctx context.Context) error
}

// Evictor ends an evicted (or banned) agent's open streams.
type Evictor interface {
	AgentEvicted(id string)
}

// Auditor records admin changes.
type Auditor interface {
	Record(ctx context.Context, kind string, fields map[string]any)
}

// Config configures the admin API.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	ServerID    spiffeid.ID
	Store       Store
	Entries     *entrycache.Cache
	Evictor     Evictor
	Bundle      func() []*x509.Certificate
	// Federation holds the federated bundles; nil when the server has no
	// federation relationships (listing then shows none, changes are
	// refused).
	Federation *federation.Fetcher
	// Authorities are the X.509 CA and the JWT signer an operator manages
	// with the localauthority actions; nil fields refuse them.
	Authorities Authorities
	// X509Minter and JWTMinter sign the SVIDs of `x509 mint` and `jwt
	// mint`; nil refuses them. DefaultX509SVIDTTL is the lifetime of a
	// minted X.509-SVID that asks for none.
	X509Minter         X509Minter
	JWTMinter          JWTMinter
	DefaultX509SVIDTTL time.Duration
	// LogLevel is the server logger's level, which `logger set` changes;
	// nil refuses the logger actions. LaunchLogLevel is what `logger
	// reset` restores.
	LogLevel        *slog.LevelVar
	LaunchLogLevel  slog.Level
	Ready           func(ctx context.Context) error
	DefaultTokenTTL time.Duration
	Audit           Auditor
	Log             *slog.Logger
	Clock           func() time.Time
}

// Server implements apiv1.AdminServer.
type Server struct {
	apiv1.UnimplementedAdminServer
	cfg Config

	entryMu sync.Mutex // serialises entry updates and deletes with their cache updates (see UpdateEntries)
}

// New returns an admin API server.
func New(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.DefaultTokenTTL == 0 {
		cfg.DefaultTokenTTL = 10 * time.Minute
	}
	return &Server{cfg: cfg}
}

func (s *Server) audit(ctx context.Context, fields map[string]any) {
	if s.cfg.Audit != nil {
		s.cfg.Audit.Record(ctx, "admin", fields)
	}
}

// MaxEntriesPerCall bounds one CreateEntries call.
const MaxEntriesPerCall = 100_000

// CreateEntries validates and stores entries in one transaction.
func (s *Server) CreateEntries(ctx context.Context, req *apiv1.CreateEntriesRequest) (*apiv1.CreateEntriesResponse, error) {
	if len(req.GetEntries()) > MaxEntriesPerCall {
		return nil, status.Errorf(codes.InvalidArgument, "at most %d entries per call", MaxEntriesPerCall)
	}
	results := make([]*apiv1.EntryResult, len(req.GetEntries()))
	var valid []registration.Entry
	var validIdx []int
	for i, p := range req.GetEntries() {
		e, err := apiconv.EntryFromProto(p)
		if err == nil {
			e.Revision, e.CreatedAt = 0, time.Time{}
			if err = checkEntryPolicy(e); err == nil {
				err = e.Validate(s.cfg.TrustDomain)
			}
		}
		if err == nil && e.SPIFFEID == s.cfg.ServerID {
			err = errors.New("the server's own SPIFFE ID cannot be registered")
		}
		if err == nil && slices.Contains(e.FederatesWith, s.cfg.TrustDomain) {
			err = fmt.Errorf("federates with %q: that is this server's own trust domain", s.cfg.TrustDomain.Name())
		}
		if err != nil {
			results[i] = &apiv1.EntryResult{Entry: p, Error: err.Error(), Code: int32(codes.InvalidArgument)}
			continue
		}
		valid = append(valid, e)
		validIdx = append(validIdx, i)
	}
	if len(valid) > 0 {
		created, err := s.cfg.Store.CreateEntries(ctx, valid)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "create entries: %v", err)
		}
		var ok []registration.Entry
		var rev int64
		for j, r := range created {
			i := validIdx[j]
			if r.Err != nil {
				msg, code := r.Err.Error(), codes.Internal
				if errors.Is(r.Err, datastore.ErrAlreadyExists) {
					msg, code = "similar entry already exists", codes.AlreadyExists
					if req.GetEntries()[i].GetId() != "" {
						msg = fmt.Sprintf("entry ID %q is taken, or a similar entry already exists", req.GetEntries()[i].GetId())
					}
				}
				results[i] = &apiv1.EntryResult{Entry: req.GetEntries()[i], Error: msg, Code: int32(code)}
				continue
			}
			ok = append(ok, r.Entry)
			rev = max(rev, r.Entry.Revision)
			results[i] = &apiv1.EntryResult{Entry: apiconv.EntryToProto(r.Entry)}
		}
		s.cfg.Entries.Apply(ok, nil, rev)
		s.audit(ctx, map[string]any{"action": "entry_create", "count": len(ok)})
		if len(ok) <= 20 {
			for _, e := range ok {
				s.audit(ctx, map[string]any{"action": "entry_created", "entry_id": e.ID, "spiffe_id": e.SPIFFEID.String(), "parent_id": e.ParentID.String()})
			}
		}
	}
	return &apiv1.CreateEntriesResponse{Results: results}, nil
}

// DeleteEntry deletes one entry.
func (s *Server) DeleteEntry(ctx context.Context, req *apiv1.DeleteEntryRequest) (*apiv1.DeleteEntryResponse, error) {
	s.entryMu.Lock()
	defer s.entryMu.Unlock()
	e, err := s.cfg.Store.DeleteEntry(ctx, req.GetId())
	if errors.Is(err, datastore.ErrNotFound) {
		return nil, status.Errorf(codes.NotFound, "entry %q not found", req.GetId())
	}
	if err != nil {
		return nil, status.Errorf(codes.Internal, "delete entry: %v", err)
	}
	s.cfg.Entries.Apply(nil, []string{e.ID}, 0)
	s.audit(ctx, map[string]any{"action": "entry_delete", "entry_id": e.ID, "spiffe_id": e.SPIFFEID.String()})
	return &apiv1.DeleteEntryResponse{Entry: apiconv.EntryToProto(e)}, nil
}

// GenerateJoinToken creates a single-use join token.
func (s *Server) GenerateJoinToken(ctx context.Context, req *apiv1.GenerateJoinTokenRequest) (*apiv1.GenerateJoinTokenResponse, error) {
	ttl := time.Duration(req.GetTtlSeconds()) * time.Second
	if ttl == 0 {
		ttl = s.cfg.DefaultTokenTTL
	}
	if ttl < 0 || ttl > 365*24*time.Hour {
		return nil, status.Error(codes.InvalidArgument, "token TTL out of range")
	}
	token, err := jointoken.Generate()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "%v", err)
	}
	agentID, err := jointoken.AgentID(s.cfg.TrustDomain, token)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "%v", err)
	}
	var alias *registration.Entry
	if req.GetSpiffeId() != "" {
		id, err := registration.ParseIDInDomain(req.GetSpiffeId(), s.cfg.TrustDomain)
		if err == nil {
			err = registration.CheckNotReserved(id)
		}
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "%v", err)
		}
		alias = &registration.Entry{SPIFFEID: id, ParentID: s.cfg.ServerID,
			Selectors: []registration.Selector{{Type: jointoken.Type, Value: token}}}
	}
	expires := s.cfg.Clock().Add(ttl)
	if err := s.cfg.Store.CreateJoinToken(ctx, datastore.JoinToken{Token: token, ExpiresAt: expires}); err != nil {
		return nil, status.Errorf(codes.Internal, "store join token: %v", err)
	}
	if alias != nil {
		res, err := s.cfg.Store.CreateEntries(ctx, []registration.Entry{*alias})
		if err != nil || res[0].Err != nil {
			return nil, status.Errorf(codes.Internal, "create node alias entry: %v", errors.Join(err, res[0].Err))
		}
		s.cfg.Entries.Apply([]registration.Entry{res[0].Entry}, nil, res[0].Entry.Revision)
	}
	s.audit(ctx, map[string]any{"action": "token_generate", "agent_id": agentID.String(), "expires_at": expires.UTC().Format(time.RFC3339)})
	return &apiv1.GenerateJoinTokenResponse{Token: token, ExpiresAt: expires.Unix(), AgentId: agentID.String()}, nil
}

// GetBundle returns the trust bundle.
func (s *Server) GetBundle(context.Context, *apiv1.GetBundleRequest) (*apiv1.Bundle, error) {
	return &apiv1.Bundle{TrustDomain: s.cfg.TrustDomain.Name(), X509Authorities: x509util.DERs(s.cfg.Bundle())}, nil
}

// Health reports readiness.
func (s *Server) Health(ctx context.Context, _ *apiv1.HealthRequest) (*apiv1.HealthResponse, error) {
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(ctx); err != nil {
			return &apiv1.HealthResponse{Ready: false, Detail: fmt.Sprint(err)}, nil
		}
	}
	return &apiv1.HealthResponse{Ready: true, Detail: "ok"}, nil
}
