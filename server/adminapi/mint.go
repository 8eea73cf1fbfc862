package adminapi

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/ca"
	"github.com/hallmarkid/hallmark/server/jwtsigner"
)

// X509Minter signs X.509-SVIDs (*ca.CA); JWTMinter signs JWT-SVIDs
// (*jwtsigner.Signer). Either may be nil: its mint is then refused.
type (
	X509Minter interface {
		SignX509SVID(ctx context.Context, p ca.X509SVIDParams) ([]*x509.Certificate, error)
	}
	JWTMinter interface {
		SignJWTSVID(ctx context.Context, p jwtsigner.JWTSVIDParams) (jwtsigner.JWTSVID, error)
	}
)

// mintID parses the SPIFFE ID of a mint: in this trust domain, with a
// path, outside the reserved namespaces (a minted agent or server ID would
// let its holder pose as an agent or as the server).
func (s *Server) mintID(id string) error {
	parsed, err := registration.ParseIDInDomain(id, s.cfg.TrustDomain)
	if err == nil && parsed.Path() == "" {
		err = fmt.Errorf("SPIFFE ID %q has no path", id)
	}
	if err == nil {
		err = registration.CheckNotReserved(parsed)
	}
	return err
}

func mintTTL(seconds int64, max time.Duration) (time.Duration, error) {
	ttl := time.Duration(seconds) * time.Second
	if seconds < 0 || ttl > max {
		return 0, fmt.Errorf("TTL %d s out of range", seconds)
	}
	return ttl, nil
}

// MintX509SVID signs an X.509-SVID for the request's SPIFFE ID and DNS
// names and the CSR's public key (SPIRE's `x509 mint`).
func (s *Server) MintX509SVID(ctx context.Context, req *apiv1.MintX509SVIDRequest) (*apiv1.MintX509SVIDResponse, error) {
	if s.cfg.X509Minter == nil {
		return nil, status.Error(codes.FailedPrecondition, "this server mints no X.509-SVIDs over the admin API")
	}
	if err := s.mintID(req.GetSpiffeId()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	if len(req.GetDnsNames()) > registration.MaxDNSNames {
		return nil, status.Errorf(codes.InvalidArgument, "at most %d DNS names", registration.MaxDNSNames)
	}
	for _, d := range req.GetDnsNames() { // as an entry's
		if err := registration.ValidateDNSName(d); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "%v", err)
		}
	}
	id, _ := registration.ParseIDInDomain(req.GetSpiffeId(), s.cfg.TrustDomain)
	ttl, err := mintTTL(req.GetTtlSeconds(), registration.MaxTTL)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	if ttl == 0 {
		ttl = s.cfg.DefaultX509SVIDTTL
	}
	if ttl <= 0 {
		return nil, status.Error(codes.InvalidArgument, "a TTL is required (the server has no default)")
	}
	csr, err := ca.ParseCSR(req.GetCsr())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	chain, err := s.cfg.X509Minter.SignX509SVID(ctx, ca.X509SVIDParams{ID: id, PublicKey: csr.PublicKey, TTL: ttl, DNSNames: req.GetDnsNames()})
	if err != nil {
		return nil, status.Errorf(codes.Internal, "mint X.509-SVID: %v", err)
	}
	resp := &apiv1.MintX509SVIDResponse{ExpiresAt: chain[0].NotAfter.Unix()}
	for _, c := range chain {
		resp.CertChain = append(resp.CertChain, c.Raw)
	}
	s.audit(ctx, map[string]any{"action": "x509_svid_mint", "spiffe_id": req.GetSpiffeId(), "dns_names": req.GetDnsNames(),
		"serial_number": chain[0].SerialNumber.String(), "expires_at": resp.GetExpiresAt()})
	return resp, nil
}

// MintJWTSVID signs a JWT-SVID (SPIRE's `jwt mint`).
func (s *Server) MintJWTSVID(ctx context.Context, req *apiv1.MintJWTSVIDRequest) (*apiv1.MintJWTSVIDResponse, error) {
	if s.cfg.JWTMinter == nil {
		return nil, status.Error(codes.FailedPrecondition, "this server mints no JWT-SVIDs over the admin API")
	}
	if err := s.mintID(req.GetSpiffeId()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	ttl, err := mintTTL(req.GetTtlSeconds(), jwtsigner.MaxTTL)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	id, _ := registration.ParseIDInDomain(req.GetSpiffeId(), s.cfg.TrustDomain)
	tok, err := s.cfg.JWTMinter.SignJWTSVID(ctx, jwtsigner.JWTSVIDParams{ID: id, Audience: req.GetAudience(), TTL: ttl})
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "mint JWT-SVID: %v", err)
	}
	s.audit(ctx, map[string]any{"action": "jwt_svid_mint", "spiffe_id": req.GetSpiffeId(), "audience": req.GetAudience(),
		"key_id": tok.KeyID, "expires_at": tok.ExpiresAt.Unix()})
	return &apiv1.MintJWTSVIDResponse{Token: tok.Token, IssuedAt: tok.IssuedAt.Unix(), ExpiresAt: tok.ExpiresAt.Unix()}, nil
}
