package workloadapi

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"golang.org/x/sync/singleflight"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/hallmarkid/hallmark/agent/cache"
	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/registration"
)

// Bounds on JWT requests from workloads.
const (
	// MaxTokenSize bounds a token given to ValidateJWTSVID.
	MaxTokenSize = 16 << 10
	// MaxAudiences bounds the audience values of one FetchJWTSVID.
	MaxAudiences = 32
	// MaxAudienceLength bounds one audience value.
	MaxAudienceLength = 1024
)

// JWTMinter asks the server for JWT-SVIDs; *client.Client satisfies it.
type JWTMinter interface {
	NewJWTSVID(ctx context.Context, entryID string, audience []string) (*apiv1.JWTSVID, error)
}

// JWTConfig adds JWT-SVIDs to a Handler.
type JWTConfig struct {
	// Store holds the JWT bundle (fed by the manager) and caches tokens.
	Store *cache.JWTStore
	// Minter gets tokens signed by the server.
	Minter JWTMinter
	// MintTimeout bounds one call to the server (default 10s).
	MintTimeout time.Duration
	// Clock returns the current time; nil means time.Now.
	Clock func() time.Time
}

// JWTHandler is a Handler that also serves FetchJWTSVID, FetchJWTBundles
// and ValidateJWTSVID.
type JWTHandler struct {
	*Handler
	jwt   JWTConfig
	group singleflight.Group
}

// WithJWT returns h serving JWT-SVIDs as well; register the result instead
// of h.
func (h *Handler) WithJWT(cfg JWTConfig) (*JWTHandler, error) {
	if cfg.Store == nil || cfg.Minter == nil {
		return nil, errors.New("workloadapi: JWT store and minter are required")
	}
	if cfg.MintTimeout == 0 {
		cfg.MintTimeout = 10 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return &JWTHandler{Handler: h, jwt: cfg}, nil
}

// Register registers the handler on s.
func (h *JWTHandler) Register(s grpc.ServiceRegistrar) {
	workload.RegisterSpiffeWorkloadAPIServer(s, h)
}

func checkAudience(aud []string) error {
	if len(aud) == 0 {
		return status.Error(codes.InvalidArgument, "audience must be specified")
	}
	if len(aud) > MaxAudiences {
		return status.Errorf(codes.InvalidArgument, "at most %d audience values", MaxAudiences)
	}
	for _, a := range aud {
		if a == "" || len(a) > MaxAudienceLength {
			return status.Errorf(codes.InvalidArgument, "audience values must be 1 to %d bytes", MaxAudienceLength)
		}
	}
	return nil
}

// FetchJWTSVID returns one JWT-SVID per SPIFFE ID the caller is entitled
// to (only req.SpiffeId when set), for the requested audience.
func (h *JWTHandler) FetchJWTSVID(ctx context.Context, req *workload.JWTSVIDRequest) (*workload.JWTSVIDResponse, error) {
	if err := CheckSecurityHeader(ctx); err != nil {
		return nil, err
	}
	if err := checkAudience(req.GetAudience()); err != nil {
		return nil, err
	}
	var want spiffeid.ID
	if req.GetSpiffeId() != "" {
		id, err := spiffeid.FromString(req.GetSpiffeId())
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "invalid requested SPIFFE ID: %v", err)
		}
		want = id
	}
	c, err := h.caller(ctx)
	if err != nil {
		return nil, err
	}
	entries := entitled(h.cfg.Cache.MatchEntries(c.Selectors), want)
	if len(entries) == 0 {
		h.cfg.Log.Debug("No JWT identity issued", "pid", c.PID, "uid", c.UID, "requested", req.GetSpiffeId())
		return nil, status.Error(codes.PermissionDenied, "no identity issued")
	}
	resp := &workload.JWTSVIDResponse{Svids: make([]*workload.JWTSVID, 0, len(entries))}
	for _, e := range entries {
		t, err := h.token(ctx, e, req.GetAudience())
		if err != nil {
			h.cfg.Log.Warn("JWT-SVID not minted", "entry_id", e.ID, "spiffe_id", e.SPIFFEID.String(), "error", err)
			if status.Code(err) == codes.PermissionDenied {
				return nil, status.Error(codes.PermissionDenied, "no identity issued")
			}
			return nil, status.Errorf(codes.Unavailable, "could not mint a JWT-SVID for %s: %v", e.SPIFFEID, err)
		}
		resp.Svids = append(resp.Svids, &workload.JWTSVID{SpiffeId: e.SPIFFEID.String(), Svid: t.Token, Hint: e.Hint})
	}
	return resp, nil
}

// entitled keeps one entry per SPIFFE ID (the lowest entry ID), only want
// when it is set, ordered by SPIFFE ID.
func entitled(entries []registration.Entry, want spiffeid.ID) []registration.Entry {
	sort.Slice(entries, func(i, j int) bool {
		if entries[i].SPIFFEID != entries[j].SPIFFEID {
			return entries[i].SPIFFEID.String() < entries[j].SPIFFEID.String()
		}
		return entries[i].ID < entries[j].ID
	})
	out := entries[:0]
	for _, e := range entries {
		if !want.IsZero() && e.SPIFFEID != want {
			continue
		}
		if len(out) > 0 && out[len(out)-1].SPIFFEID == e.SPIFFEID {
			continue
		}
		out = append(out, e)
	}
	return out
}

// token returns a cached token for (entry, audience set) before its
// half-life, or mints one; concurrent callers share one server call.
func (h *JWTHandler) token(ctx context.Context, e registration.Entry, audience []string) (*cache.JWTSVID, error) {
	if t := h.jwt.Store.Token(e, audience, h.jwt.Clock()); t != nil {
		return t, nil
	}
	key := e.ID + "\x01" + strconv.FormatInt(e.Revision, 10) + "\x01" + cache.AudienceKey(audience)
	ch := h.group.DoChan(key, func() (any, error) {
		now := h.jwt.Clock()
		if t := h.jwt.Store.Token(e, audience, now); t != nil {
			return t, nil
		}
		// Not the caller's context: other callers wait on this call too.
		mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.jwt.MintTimeout)
		defer cancel()
		p, err := h.jwt.Minter.NewJWTSVID(mctx, e.ID, audience)
		if err != nil {
			return nil, err
		}
		t, err := checkMinted(p.GetToken(), e.SPIFFEID, audience)
		if err != nil {
			return nil, err
		}
		h.jwt.Store.PutToken(e, audience, t, now)
		return t, nil
	})
	select {
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*cache.JWTSVID), nil
	}
}

// checkMinted makes sure the server signed what was asked: the subject is
// the entry's SPIFFE ID and every requested audience is present.
func checkMinted(token string, id spiffeid.ID, audience []string) (*cache.JWTSVID, error) {
	svid, err := jwtsvid.ParseInsecure(token, audience[:1])
	if err != nil {
		return nil, fmt.Errorf("server sent an unusable JWT-SVID: %w", err)
	}
	if svid.ID != id {
		return nil, fmt.Errorf("server signed a JWT-SVID for %s, asked for %s", svid.ID, id)
	}
	for _, a := range audience {
		if !containsString(svid.Audience, a) {
			return nil, fmt.Errorf("server's JWT-SVID lacks audience %q", a)
		}
	}
	iat := svid.Expiry
	if v, ok := svid.Claims["iat"].(float64); ok {
		iat = time.Unix(int64(v), 0)
	}
	return &cache.JWTSVID{Token: token, ID: svid.ID, IssuedAt: iat, ExpiresAt: svid.Expiry}, nil
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// FetchJWTBundles streams the JWT bundles (JWKS): the own trust domain's
// and those of the trust domains the caller's entries federate with that
// publish JWT keys; re-sent whenever one of them changes.
func (h *JWTHandler) FetchJWTBundles(_ *workload.JWTBundlesRequest, stream grpc.ServerStreamingServer[workload.JWTBundlesResponse]) error {
	ctx := stream.Context()
	if h.cfg.Metrics != nil {
		defer h.cfg.Metrics.StreamOpened("workload_api")()
	}
	c, err := h.caller(ctx)
	if err != nil {
		return err
	}
	var last map[string][]byte
	for {
		changed, _ := h.cfg.Cache.Changed()
		keysChanged := h.jwt.Store.Changed()
		entries := h.cfg.Cache.MatchEntries(c.Selectors)
		if len(entries) == 0 {
			return status.Error(codes.PermissionDenied, "no identity issued")
		}
		if own := h.jwt.Store.Bundle(); own != nil {
			docs := make(map[string][]byte)
			for _, b := range h.jwtBundles(own, entries) {
				doc, err := b.Marshal()
				if err != nil {
					return status.Errorf(codes.Internal, "marshal JWT bundle: %v", err)
				}
				docs[b.TrustDomain().IDString()] = doc
			}
			if last == nil || !sameBundles(last, docs) {
				if err := stream.Send(&workload.JWTBundlesResponse{Bundles: docs}); err != nil {
					return err
				}
				last = docs
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-keysChanged:
		}
		if err := h.recheck(c, "FetchJWTBundles"); err != nil {
			return err
		}
	}
}

// jwtBundles returns own (when not nil) and the JWT bundles of the trust
// domains entries federate with.
func (h *JWTHandler) jwtBundles(own *jwtbundle.Bundle, entries []registration.Entry) []*jwtbundle.Bundle {
	var out []*jwtbundle.Bundle
	if own != nil {
		out = append(out, own)
	}
	for _, b := range h.cfg.Cache.FederatedFor(entries) {
		if b.JWT != nil { // the cache never holds the own trust domain as federated
			out = append(out, b.JWT)
		}
	}
	return out
}

// ValidateJWTSVID validates a token against the agent's JWT bundle and
// those of the trust domains the caller's entries federate with, for the
// requested audience, and returns its SPIFFE ID and claims. Any attested
// caller may validate; no entry is needed (it then trusts only the own
// trust domain).
func (h *JWTHandler) ValidateJWTSVID(ctx context.Context, req *workload.ValidateJWTSVIDRequest) (*workload.ValidateJWTSVIDResponse, error) {
	if err := CheckSecurityHeader(ctx); err != nil {
		return nil, err
	}
	switch {
	case req.GetAudience() == "":
		return nil, status.Error(codes.InvalidArgument, "audience must be specified")
	case req.GetSvid() == "":
		return nil, status.Error(codes.InvalidArgument, "svid must be specified")
	}
	c, err := h.caller(ctx)
	if err != nil {
		return nil, err
	}
	var bundles jwtbundle.Source = h.jwt.Store
	if fed := h.jwtBundles(h.jwt.Store.Bundle(), h.cfg.Cache.MatchEntries(c.Selectors)); len(fed) > 0 {
		bundles = jwtbundle.NewSet(fed...)
	}
	svid, err := ValidateToken(req.GetSvid(), bundles, req.GetAudience())
	if err != nil {
		h.cfg.Log.Debug("JWT-SVID rejected", "error", err)
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	claims, err := structpb.NewStruct(svid.Claims)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "workloadapi: token claims: %v", err)
	}
	return &workload.ValidateJWTSVIDResponse{SpiffeId: svid.ID.String(), Claims: claims}, nil
}

// ValidateToken validates a JWT-SVID against bundles for audience: size
// bound, an allowed asymmetric algorithm (none and HS* are refused), a
// key ID naming a key of the subject's trust domain, a valid signature,
// sub, exp (required, not past), nbf/iat not in the future, and aud
// containing audience.
func ValidateToken(token string, bundles jwtbundle.Source, audience string) (*jwtsvid.SVID, error) {
	if len(token) > MaxTokenSize {
		return nil, fmt.Errorf("workloadapi: token of %d bytes, at most %d accepted", len(token), MaxTokenSize)
	}
	if audience == "" {
		return nil, errors.New("workloadapi: audience must be specified")
	}
	svid, err := jwtsvid.ParseAndValidate(token, bundles, []string{audience})
	if err != nil {
		return nil, fmt.Errorf("workloadapi: invalid JWT-SVID: %w", err)
	}
	return svid, nil
}
