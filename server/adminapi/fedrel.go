package adminapi

import (
	"context"
	"errors"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/server/federation"
)

// CreateFederationRelationship adds a dynamic relationship.
func (s *Server) CreateFederationRelationship(ctx context.Context, req *apiv1.FederationRelationshipSpec) (*apiv1.FederationRelationship, error) {
	return s.changeRelationship(ctx, "federation_create", req, s.cfg.Federation.CreateRelationship)
}

// UpdateFederationRelationship replaces a dynamic relationship's endpoint,
// and its bundle when one is given.
func (s *Server) UpdateFederationRelationship(ctx context.Context, req *apiv1.FederationRelationshipSpec) (*apiv1.FederationRelationship, error) {
	return s.changeRelationship(ctx, "federation_update", req, s.cfg.Federation.UpdateRelationship)
}

type relationshipChange func(context.Context, federation.Relationship, *spiffebundle.Bundle) (federation.Status, error)

func (s *Server) changeRelationship(ctx context.Context, action string, req *apiv1.FederationRelationshipSpec, change relationshipChange) (*apiv1.FederationRelationship, error) {
	td, err := s.trustDomain(req.GetTrustDomain())
	if err != nil {
		return nil, s.refuse(ctx, action, req.GetTrustDomain(), err)
	}
	if s.cfg.Federation == nil {
		return nil, s.refuse(ctx, action, td.Name(), errNoFederation)
	}
	rel := federation.Relationship{TrustDomain: td, URL: req.GetBundleEndpointUrl(), Profile: federation.Profile(req.GetBundleEndpointProfile())}
	if raw := req.GetEndpointSpiffeId(); raw != "" {
		if rel.EndpointID, err = spiffeid.FromString(raw); err != nil {
			return nil, s.refuse(ctx, action, td.Name(), status.Errorf(codes.InvalidArgument, "endpoint SPIFFE ID %q: %v", raw, err))
		}
	}
	var b *spiffebundle.Bundle
	if doc := req.GetTrustDomainBundle(); len(doc) > 0 {
		if b, err = federation.ParseBundle(td, doc); err != nil {
			return nil, s.refuse(ctx, action, td.Name(), status.Errorf(codes.InvalidArgument, "trust domain bundle: %v", err))
		}
	}
	st, err := change(ctx, rel, b)
	if err != nil {
		return nil, s.refuse(ctx, action, td.Name(), relationshipStatus(err))
	}
	s.audit(ctx, map[string]any{"action": action, "trust_domain": td.Name(), "bundle_endpoint_url": rel.URL,
		"bundle_endpoint_profile": string(rel.Profile), "endpoint_spiffe_id": idString(rel.EndpointID), "bundle": b != nil})
	return relationshipToProto(st), nil
}

// DeleteFederationRelationship removes a dynamic relationship; its bundle
// stops being trusted.
func (s *Server) DeleteFederationRelationship(ctx context.Context, req *apiv1.DeleteFederationRelationshipRequest) (*apiv1.DeleteFederationRelationshipResponse, error) {
	const action = "federation_delete"
	td, err := s.trustDomain(req.GetTrustDomain())
	if err != nil {
		return nil, s.refuse(ctx, action, req.GetTrustDomain(), err)
	}
	if s.cfg.Federation == nil {
		return nil, s.refuse(ctx, action, td.Name(), status.Errorf(codes.NotFound, "no federation relationship with %q", td.Name()))
	}
	if err := s.cfg.Federation.DeleteRelationship(ctx, td); err != nil {
		return nil, s.refuse(ctx, action, td.Name(), relationshipStatus(err))
	}
	s.audit(ctx, map[string]any{"action": action, "trust_domain": td.Name()})
	return &apiv1.DeleteFederationRelationshipResponse{}, nil
}

// relationshipStatus maps the fetcher's errors to gRPC codes.
func relationshipStatus(err error) error {
	code := codes.InvalidArgument
	switch {
	case errors.Is(err, federation.ErrExists):
		code = codes.AlreadyExists
	case errors.Is(err, federation.ErrUnknownTrustDomain):
		code = codes.NotFound
	case errors.Is(err, federation.ErrConfigured), errors.Is(err, federation.ErrNoStore):
		code = codes.FailedPrecondition
	}
	return status.Errorf(code, "%v", err)
}
