package adminapi

import (
	"context"
	"sort"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/server/federation"
)

// errNoFederation answers federation changes on a server built without a
// fetcher.
var errNoFederation = status.Error(codes.FailedPrecondition,
	"federation is not enabled on this server: add a federation block with at least one federates_with to its configuration")

// trustDomain parses a trust domain name or ID from a request and refuses
// our own.
func (s *Server) trustDomain(raw string) (spiffeid.TrustDomain, error) {
	if raw == "" {
		return spiffeid.TrustDomain{}, status.Error(codes.InvalidArgument, "a trust domain is required")
	}
	td, err := spiffeid.TrustDomainFromString(raw)
	if err != nil {
		return spiffeid.TrustDomain{}, status.Errorf(codes.InvalidArgument, "trust domain %q: %v", raw, err)
	}
	if td == s.cfg.TrustDomain {
		return spiffeid.TrustDomain{}, status.Errorf(codes.InvalidArgument,
			"%q is this server's own trust domain, not a federated one (its bundle is `bundle show`)", td.Name())
	}
	return td, nil
}

// refuse audits a refused federation change and returns err.
func (s *Server) refuse(ctx context.Context, action, td string, err error) error {
	s.audit(ctx, map[string]any{"action": action, "trust_domain": td, "result": "rejected", "reason": status.Convert(err).Message()})
	return err
}

// ListFederatedBundles returns the federated bundles held, all or one.
func (s *Server) ListFederatedBundles(_ context.Context, req *apiv1.ListFederatedBundlesRequest) (*apiv1.ListFederatedBundlesResponse, error) {
	var only spiffeid.TrustDomain
	if req.GetTrustDomain() != "" {
		td, err := s.trustDomain(req.GetTrustDomain())
		if err != nil {
			return nil, err
		}
		only = td
	}
	resp := &apiv1.ListFederatedBundlesResponse{}
	if s.cfg.Federation != nil {
		for td, b := range s.cfg.Federation.Bundles() {
			if !only.IsZero() && td != only {
				continue
			}
			doc, err := federation.MarshalBundle(b)
			if err != nil {
				return nil, status.Errorf(codes.Internal, "%v", err)
			}
			resp.Bundles = append(resp.Bundles, &apiv1.BundleDocument{TrustDomain: td.Name(), Document: doc})
		}
	}
	if !only.IsZero() && len(resp.Bundles) == 0 {
		return nil, status.Errorf(codes.NotFound, "no bundle of trust domain %q", only.Name())
	}
	sort.Slice(resp.Bundles, func(i, j int) bool { return resp.Bundles[i].TrustDomain < resp.Bundles[j].TrustDomain })
	return resp, nil
}

// SetFederatedBundle replaces the bundle of a federates_with trust domain,
// whatever its sequence, or sets a static bundle for another one.
func (s *Server) SetFederatedBundle(ctx context.Context, req *apiv1.SetFederatedBundleRequest) (*apiv1.SetFederatedBundleResponse, error) {
	const action = "bundle_set"
	raw := req.GetBundle().GetTrustDomain()
	td, err := s.trustDomain(raw)
	if err != nil {
		return nil, s.refuse(ctx, action, raw, err)
	}
	if s.cfg.Federation == nil {
		return nil, s.refuse(ctx, action, td.Name(), errNoFederation)
	}
	b, err := federation.ParseBundle(td, req.GetBundle().GetDocument())
	if err != nil {
		return nil, s.refuse(ctx, action, td.Name(), status.Errorf(codes.InvalidArgument, "%v", err))
	}
	if err := s.cfg.Federation.SetBundle(ctx, b); err != nil {
		return nil, s.refuse(ctx, action, td.Name(), status.Errorf(codes.InvalidArgument, "%v", err))
	}
	st, _ := s.relationship(td)
	seq, _ := b.SequenceNumber()
	s.audit(ctx, map[string]any{"action": action, "trust_domain": td.Name(), "static": st.GetStatic(),
		"x509_authorities": len(b.X509Authorities()), "jwt_authorities": len(b.JWTAuthorities()), "sequence": seq})
	s.cfg.Log.Info("Federated bundle set by an operator", "trust_domain", td.Name(), "static", st.GetStatic(),
		"x509_authorities", len(b.X509Authorities()), "jwt_authorities", len(b.JWTAuthorities()))
	return &apiv1.SetFederatedBundleResponse{Relationship: st}, nil
}

// ListFederationRelationships returns the fetcher's status of every
// federated trust domain.
func (s *Server) ListFederationRelationships(context.Context, *apiv1.ListFederationRelationshipsRequest) (*apiv1.ListFederationRelationshipsResponse, error) {
	resp := &apiv1.ListFederationRelationshipsResponse{}
	if s.cfg.Federation != nil {
		for _, st := range s.cfg.Federation.Status() {
			resp.Relationships = append(resp.Relationships, relationshipToProto(st))
		}
	}
	return resp, nil
}

// RefreshFederatedBundle fetches the bundle of a relationship now.
func (s *Server) RefreshFederatedBundle(ctx context.Context, req *apiv1.RefreshFederatedBundleRequest) (*apiv1.FederationRelationship, error) {
	const action = "federation_refresh"
	td, err := s.trustDomain(req.GetTrustDomain())
	if err != nil {
		return nil, s.refuse(ctx, action, req.GetTrustDomain(), err)
	}
	st, ok := s.relationship(td)
	switch {
	case !ok:
		return nil, s.refuse(ctx, action, td.Name(), status.Errorf(codes.NotFound, "no federation relationship with %q", td.Name()))
	case st.GetStatic():
		return nil, s.refuse(ctx, action, td.Name(), status.Errorf(codes.FailedPrecondition,
			"the bundle of %q was set with `bundle set` and has no endpoint to fetch from", td.Name()))
	}
	if err := s.cfg.Federation.Refresh(ctx, td); err != nil {
		s.audit(ctx, map[string]any{"action": action, "trust_domain": td.Name(), "result": "failed", "reason": err.Error()})
		s.cfg.Log.Warn("Federated bundle refresh failed", "trust_domain", td.Name(), "requested_by", "admin", "error", err)
		return nil, status.Errorf(codes.Unavailable, "%v", err)
	}
	st, _ = s.relationship(td)
	s.audit(ctx, map[string]any{"action": action, "trust_domain": td.Name(), "result": "ok", "sequence": st.GetSequence()})
	return st, nil
}

// relationship returns the status of td, if federated.
func (s *Server) relationship(td spiffeid.TrustDomain) (*apiv1.FederationRelationship, bool) {
	if s.cfg.Federation == nil {
		return nil, false
	}
	for _, st := range s.cfg.Federation.Status() {
		if st.TrustDomain == td {
			return relationshipToProto(st), true
		}
	}
	return nil, false
}

func relationshipToProto(st federation.Status) *apiv1.FederationRelationship {
	return &apiv1.FederationRelationship{
		TrustDomain: st.TrustDomain.Name(), BundleEndpointUrl: st.URL, BundleEndpointProfile: string(st.Profile),
		Static: st.Static, HasBundle: st.HasBundle, Revoked: st.Revoked, HasSequence: st.HasSequence, Sequence: st.Sequence,
		X509Authorities: int32(min(st.X509Authorities, 1<<30)), LastAttempt: unix(st.LastAttempt), LastSuccess: unix(st.LastSuccess),
		LastError: st.LastError, RefreshIntervalSeconds: int64(st.RefreshInterval.Seconds()), NextRefresh: unix(st.NextRefresh),
		Dynamic: st.Dynamic, EndpointSpiffeId: idString(st.EndpointID),
	}
}

func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func idString(id spiffeid.ID) string {
	if id.IsZero() {
		return ""
	}
	return id.String()
}
