package nodeapi

import (
	"context"
	"crypto"
	"crypto/x509"
	"maps"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/jwtsigner"
)

// JWTSigner signs JWT-SVIDs and publishes the keys that verify them;
// *jwtsigner.Signer satisfies it.
type JWTSigner interface {
	SignJWTSVID(ctx context.Context, p jwtsigner.JWTSVIDParams) (jwtsigner.JWTSVID, error)
	// JWTAuthorities returns the published public keys by key ID.
	JWTAuthorities() map[string]crypto.PublicKey
	// Changed returns a channel closed at the next change of the keys.
	Changed() <-chan struct{}
}

// NewJWTSVID signs a JWT-SVID for an entry authorised for the caller,
// exactly as BatchSignX509SVID decides: the entry must be in the agent's
// authorised set. The subject is the entry's SPIFFE ID; the caller only
// chooses the audience.
func (s *Server) NewJWTSVID(ctx context.Context, req *apiv1.NewJWTSVIDRequest) (*apiv1.NewJWTSVIDResponse, error) {
	if s.cfg.JWTSigner == nil {
		return nil, status.Error(codes.Unimplemented, "JWT-SVIDs are not enabled on this server")
	}
	rec, _, err := s.callerRecord(ctx)
	if err != nil {
		return nil, err
	}
	if err := jwtsigner.CheckAudience(req.GetAudience()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	agentID, _ := spiffeid.FromString(rec.ID)
	authorized, _ := s.cfg.Entries.Authorized(agentID, rec.Selectors)
	e, ok := authorized[req.GetEntryId()]
	if !ok {
		return nil, status.Error(codes.PermissionDenied, "entry not found or not authorised for this agent")
	}
	if err := registration.CheckNotReserved(e.SPIFFEID); err != nil {
		return nil, status.Errorf(codes.PermissionDenied, "%v", err)
	}
	ttl := min(e.JWTSVIDTTL, jwtsigner.MaxTTL)
	start := time.Now()
	svid, err := s.cfg.JWTSigner.SignJWTSVID(ctx, jwtsigner.JWTSVIDParams{ID: e.SPIFFEID, Audience: req.GetAudience(), TTL: ttl})
	if err != nil {
		return nil, status.Errorf(codes.Internal, "sign JWT-SVID: %v", err)
	}
	s.cfg.Metrics.SVIDIssued("jwt", time.Since(start))
	s.cfg.Audit.Record(ctx, "issuance", map[string]any{
		"kind": "jwt", "spiffe_id": e.SPIFFEID.String(), "entry_id": e.ID, "caller": rec.ID,
		"audience": svid.Audience, "key_id": svid.KeyID, "expires_at": svid.ExpiresAt.UTC().Format(time.RFC3339),
	})
	return &apiv1.NewJWTSVIDResponse{Svid: &apiv1.JWTSVID{
		Token: svid.Token, SpiffeId: e.SPIFFEID.String(), ExpiresAt: svid.ExpiresAt.Unix(), IssuedAt: svid.IssuedAt.Unix(),
	}}, nil
}

// jwtBundleProto returns the JWT signing keys ordered by key ID, or nil
// when the server does not issue JWT-SVIDs.
func (s *Server) jwtBundleProto() *apiv1.JWTBundle {
	if s.cfg.JWTSigner == nil {
		return nil
	}
	b := &apiv1.JWTBundle{Keys: s.jwtKeysProto(s.cfg.JWTSigner.JWTAuthorities())}
	if tr, ok := s.cfg.JWTSigner.(interface{ TaintedKeyIDs() []string }); ok {
		b.TaintedKeyIds = slices.Sorted(slices.Values(tr.TaintedKeyIDs()))
	}
	return b
}

// jwtKeysProto converts keys to the wire form ordered by key ID, leaving
// out (and logging, with logArgs) keys that cannot be marshalled.
func (s *Server) jwtKeysProto(keys map[string]crypto.PublicKey, logArgs ...any) []*apiv1.JWTKey {
	out := make([]*apiv1.JWTKey, 0, len(keys))
	for _, kid := range slices.Sorted(maps.Keys(keys)) {
		der, err := x509.MarshalPKIXPublicKey(keys[kid])
		if err != nil {
			s.cfg.Log.Error("Leaving an unmarshalable JWT key out of the bundle", append([]any{"key_id", kid, "error", err}, logArgs...)...)
			continue
		}
		out = append(out, &apiv1.JWTKey{KeyId: kid, PublicKey: der})
	}
	return out
}

// jwtChanged returns the channel closed at the next JWT key change, or nil
// (never ready) without a JWT signer.
func (s *Server) jwtChanged() <-chan struct{} {
	if s.cfg.JWTSigner == nil {
		return nil
	}
	return s.cfg.JWTSigner.Changed()
}
