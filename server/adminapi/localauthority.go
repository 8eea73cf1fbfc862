package adminapi

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/server/ca"
	"github.com/hallmarkid/hallmark/server/jwtsigner"
)

// X509Authorities is the part of the X.509 CA (*ca.CA) the
// localauthority x509 actions drive.
type X509Authorities interface {
	Authorities() []ca.AuthorityInfo
	PrepareAuthority(ctx context.Context) (ca.AuthorityInfo, error)
	ActivateAuthority(ctx context.Context, id string) (ca.AuthorityInfo, error)
	TaintAuthority(ctx context.Context, id string) (ca.AuthorityInfo, error)
	RevokeAuthority(ctx context.Context, id string) (ca.AuthorityInfo, error)
}

// JWTAuthorities is the part of the JWT signer (*jwtsigner.Signer) the
// localauthority jwt actions drive.
type JWTAuthorities interface {
	Keys() []jwtsigner.KeyInfo
	PrepareKey(ctx context.Context) (jwtsigner.KeyInfo, error)
	ActivateKey(ctx context.Context, id string) (jwtsigner.KeyInfo, error)
	TaintKey(ctx context.Context, id string) (jwtsigner.KeyInfo, error)
	RevokeKey(ctx context.Context, id string) (jwtsigner.KeyInfo, error)
}

// Authorities are the trust domain's own signing authorities an operator
// manages; a nil field refuses its actions.
type Authorities struct {
	X509 X509Authorities
	JWT  JWTAuthorities
}

var (
	errNoX509 = status.Error(codes.FailedPrecondition, "this server exposes no X.509 authority management")
	errNoJWT  = status.Error(codes.FailedPrecondition, "this server exposes no JWT authority management")
)

// ListX509Authorities lists the CA's authorities.
func (s *Server) ListX509Authorities(context.Context, *apiv1.ListLocalAuthoritiesRequest) (*apiv1.ListLocalAuthoritiesResponse, error) {
	if s.cfg.Authorities.X509 == nil {
		return nil, errNoX509
	}
	resp := &apiv1.ListLocalAuthoritiesResponse{}
	for _, a := range s.cfg.Authorities.X509.Authorities() {
		resp.Authorities = append(resp.Authorities, x509AuthorityToProto(a))
	}
	return resp, nil
}

// PrepareX509Authority prepares (and publishes) the next X.509 authority now.
func (s *Server) PrepareX509Authority(ctx context.Context, _ *apiv1.PrepareLocalAuthorityRequest) (*apiv1.LocalAuthority, error) {
	return s.x509Action(ctx, "x509_authority_prepare", "", func(x X509Authorities) (ca.AuthorityInfo, error) {
		return x.PrepareAuthority(ctx)
	})
}

// ActivateX509Authority makes the prepared X.509 authority sign now.
func (s *Server) ActivateX509Authority(ctx context.Context, req *apiv1.LocalAuthorityRequest) (*apiv1.LocalAuthority, error) {
	return s.x509Action(ctx, "x509_authority_activate", req.GetAuthorityId(), func(x X509Authorities) (ca.AuthorityInfo, error) {
		return x.ActivateAuthority(ctx, req.GetAuthorityId())
	})
}

// TaintX509Authority marks an old X.509 authority compromised.
func (s *Server) TaintX509Authority(ctx context.Context, req *apiv1.LocalAuthorityRequest) (*apiv1.LocalAuthority, error) {
	return s.x509Action(ctx, "x509_authority_taint", req.GetAuthorityId(), func(x X509Authorities) (ca.AuthorityInfo, error) {
		return x.TaintAuthority(ctx, req.GetAuthorityId())
	})
}

// RevokeX509Authority removes a tainted old X.509 authority from the bundle.
func (s *Server) RevokeX509Authority(ctx context.Context, req *apiv1.LocalAuthorityRequest) (*apiv1.LocalAuthority, error) {
	return s.x509Action(ctx, "x509_authority_revoke", req.GetAuthorityId(), func(x X509Authorities) (ca.AuthorityInfo, error) {
		return x.RevokeAuthority(ctx, req.GetAuthorityId())
	})
}

// x509Action runs one X.509 authority action, audits its outcome and maps
// its error to a status. id is "" for prepare, which takes none.
func (s *Server) x509Action(ctx context.Context, action, id string, do func(X509Authorities) (ca.AuthorityInfo, error)) (*apiv1.LocalAuthority, error) {
	if s.cfg.Authorities.X509 == nil {
		return nil, s.refuseAuthority(ctx, action, id, errNoX509)
	}
	if err := checkAuthorityID(action, id); err != nil {
		return nil, s.refuseAuthority(ctx, action, id, err)
	}
	var previous string
	if as := s.cfg.Authorities.X509.Authorities(); len(as) > 0 {
		previous = as[0].ID
	}
	info, err := do(s.cfg.Authorities.X509)
	if err != nil {
		return nil, s.refuseAuthority(ctx, action, id, authorityStatus(err, ca.ErrUnknownAuthority, ca.ErrRefused))
	}
	s.auditAuthority(ctx, action, info.ID, info.Status, info.Certificate.NotAfter, previous)
	return x509AuthorityToProto(info), nil
}

// ListJWTAuthorities lists the JWT signing keys.
func (s *Server) ListJWTAuthorities(context.Context, *apiv1.ListLocalAuthoritiesRequest) (*apiv1.ListLocalAuthoritiesResponse, error) {
	if s.cfg.Authorities.JWT == nil {
		return nil, errNoJWT
	}
	resp := &apiv1.ListLocalAuthoritiesResponse{}
	for _, k := range s.cfg.Authorities.JWT.Keys() {
		p, err := jwtKeyToProto(k)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "%v", err)
		}
		resp.Authorities = append(resp.Authorities, p)
	}
	return resp, nil
}

// PrepareJWTAuthority prepares (and publishes) the next JWT key now.
func (s *Server) PrepareJWTAuthority(ctx context.Context, _ *apiv1.PrepareLocalAuthorityRequest) (*apiv1.LocalAuthority, error) {
	return s.jwtAction(ctx, "jwt_authority_prepare", "", func(j JWTAuthorities) (jwtsigner.KeyInfo, error) {
		return j.PrepareKey(ctx)
	})
}

// ActivateJWTAuthority makes the prepared JWT key sign now.
func (s *Server) ActivateJWTAuthority(ctx context.Context, req *apiv1.LocalAuthorityRequest) (*apiv1.LocalAuthority, error) {
	return s.jwtAction(ctx, "jwt_authority_activate", req.GetAuthorityId(), func(j JWTAuthorities) (jwtsigner.KeyInfo, error) {
		return j.ActivateKey(ctx, req.GetAuthorityId())
	})
}

// TaintJWTAuthority marks an old JWT key compromised.
func (s *Server) TaintJWTAuthority(ctx context.Context, req *apiv1.LocalAuthorityRequest) (*apiv1.LocalAuthority, error) {
	return s.jwtAction(ctx, "jwt_authority_taint", req.GetAuthorityId(), func(j JWTAuthorities) (jwtsigner.KeyInfo, error) {
		return j.TaintKey(ctx, req.GetAuthorityId())
	})
}

// RevokeJWTAuthority removes a tainted old JWT key from the JWT bundle.
func (s *Server) RevokeJWTAuthority(ctx context.Context, req *apiv1.LocalAuthorityRequest) (*apiv1.LocalAuthority, error) {
	return s.jwtAction(ctx, "jwt_authority_revoke", req.GetAuthorityId(), func(j JWTAuthorities) (jwtsigner.KeyInfo, error) {
		return j.RevokeKey(ctx, req.GetAuthorityId())
	})
}

func (s *Server) jwtAction(ctx context.Context, action, id string, do func(JWTAuthorities) (jwtsigner.KeyInfo, error)) (*apiv1.LocalAuthority, error) {
	if s.cfg.Authorities.JWT == nil {
		return nil, s.refuseAuthority(ctx, action, id, errNoJWT)
	}
	if err := checkAuthorityID(action, id); err != nil {
		return nil, s.refuseAuthority(ctx, action, id, err)
	}
	var previous string
	if ks := s.cfg.Authorities.JWT.Keys(); len(ks) > 0 {
		previous = ks[0].ID
	}
	info, err := do(s.cfg.Authorities.JWT)
	if err != nil {
		return nil, s.refuseAuthority(ctx, action, id, authorityStatus(err, jwtsigner.ErrUnknownKey, jwtsigner.ErrRefused))
	}
	s.auditAuthority(ctx, action, info.ID, info.Status, info.NotAfter, previous)
	p, err := jwtKeyToProto(info)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "%v", err)
	}
	return p, nil
}

// maxAuthorityIDLen bounds a requested authority ID (X.509 IDs have 16
// characters, JWT key IDs 43).
const maxAuthorityIDLen = 128

// checkAuthorityID requires an ID for every action but prepare.
func checkAuthorityID(action, id string) error {
	isPrepare := action == "x509_authority_prepare" || action == "jwt_authority_prepare"
	switch {
	case isPrepare:
		return nil
	case id == "":
		return status.Error(codes.InvalidArgument, "an authority ID is required (see `localauthority x509 show` or `localauthority jwt show`)")
	case len(id) > maxAuthorityIDLen:
		return status.Errorf(codes.InvalidArgument, "authority ID longer than %d characters", maxAuthorityIDLen)
	}
	return nil
}

// authorityStatus maps an action's error: unknown IDs are NotFound,
// refusals FailedPrecondition, anything else (e.g. the shared store is
// down) Unavailable.
func authorityStatus(err, unknown, refused error) error {
	switch {
	case errors.Is(err, unknown):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, refused):
		return status.Error(codes.FailedPrecondition, err.Error())
	default:
		return status.Error(codes.Unavailable, err.Error())
	}
}

func (s *Server) refuseAuthority(ctx context.Context, action, id string, err error) error {
	s.audit(ctx, map[string]any{"action": action, "authority_id": id, "result": "rejected", "reason": status.Convert(err).Message()})
	s.cfg.Log.Warn("Local authority action refused", "action", action, "authority_id", id, "error", status.Convert(err).Message())
	return err
}

func (s *Server) auditAuthority(ctx context.Context, action, id, st string, notAfter time.Time, previous string) {
	rec := map[string]any{"action": action, "authority_id": id, "status": st, "not_after": notAfter.UTC().Format(time.RFC3339)}
	if action == "x509_authority_activate" || action == "jwt_authority_activate" {
		rec["previous_authority_id"] = previous
	}
	s.audit(ctx, rec)
	s.cfg.Log.Info("Local authority changed by an operator", "action", action, "authority_id", id, "status", st)
}

func x509AuthorityToProto(a ca.AuthorityInfo) *apiv1.LocalAuthority {
	c := a.Certificate
	return &apiv1.LocalAuthority{
		AuthorityId: a.ID, Status: a.Status, Tainted: a.Tainted, NotBefore: c.NotBefore.Unix(), NotAfter: c.NotAfter.Unix(),
		PublishedAt: unix(a.PublishedAt), ActivatedAt: unix(a.ActivatedAt), X509Certificate: c.Raw,
		SubjectKeyId: hex.EncodeToString(c.SubjectKeyId), Intermediate: a.Intermediate,
	}
}

func jwtKeyToProto(k jwtsigner.KeyInfo) (*apiv1.LocalAuthority, error) {
	der, err := x509.MarshalPKIXPublicKey(k.PublicKey)
	if err != nil {
		return nil, err
	}
	return &apiv1.LocalAuthority{
		AuthorityId: k.ID, Status: k.Status, Tainted: k.Tainted, NotBefore: unix(k.NotBefore), NotAfter: unix(k.NotAfter),
		PublishedAt: unix(k.PublishedAt), ActivatedAt: unix(k.ActivatedAt), PublicKey: der, Algorithm: k.Algorithm,
	}, nil
}
