package adminapi_test

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
)

// TestFederationRelationshipAPI: create, update and delete of dynamic
// relationships over the admin API, each audited; the configured web.test
// is read-only; bad input is InvalidArgument naming the problem.
func TestFederationRelationshipAPI(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fx := newFixture(t, true)
	dynDoc := document(t, "dyn.test", 1, newCA(t, "spiffe://dyn.test"))
	spec := &apiv1.FederationRelationshipSpec{TrustDomain: "spiffe://dyn.test", BundleEndpointUrl: "https://dyn.test:8443",
		BundleEndpointProfile: "https_spiffe", EndpointSpiffeId: "spiffe://dyn.test/spire/server", TrustDomainBundle: dynDoc}
	r, err := fx.srv.CreateFederationRelationship(ctx, spec)
	if err != nil || !r.GetDynamic() || r.GetEndpointSpiffeId() != "spiffe://dyn.test/spire/server" || r.GetX509Authorities() != 1 {
		t.Fatalf("create: %v, %v", r, err)
	}
	if rec := fx.audit.find("federation_create"); rec["trust_domain"] != "dyn.test" || rec["result"] != nil || rec["bundle"] != true {
		t.Fatalf("create audit: %v", rec)
	}
	for _, tt := range []struct {
		name     string
		call     func() error
		wantCode codes.Code
		wantErr  string
	}{
		{"create again", func() error { _, err := fx.srv.CreateFederationRelationship(ctx, spec); return err },
			codes.AlreadyExists, "already exists"},
		{"update configured", func() error {
			_, err := fx.srv.UpdateFederationRelationship(ctx, &apiv1.FederationRelationshipSpec{TrustDomain: "web.test",
				BundleEndpointUrl: "https://web.test/x", BundleEndpointProfile: "https_web"})
			return err
		}, codes.FailedPrecondition, "federation block"},
		{"delete configured", func() error {
			_, err := fx.srv.DeleteFederationRelationship(ctx, &apiv1.DeleteFederationRelationshipRequest{TrustDomain: "web.test"})
			return err
		}, codes.FailedPrecondition, "read-only"},
		{"delete unknown", func() error {
			_, err := fx.srv.DeleteFederationRelationship(ctx, &apiv1.DeleteFederationRelationshipRequest{TrustDomain: "nobody.test"})
			return err
		}, codes.NotFound, "nobody.test"},
		{"own trust domain", func() error {
			_, err := fx.srv.CreateFederationRelationship(ctx, &apiv1.FederationRelationshipSpec{TrustDomain: "example.org",
				BundleEndpointUrl: "https://x", BundleEndpointProfile: "https_web"})
			return err
		}, codes.InvalidArgument, "own trust domain"},
		{"unknown profile", func() error {
			_, err := fx.srv.CreateFederationRelationship(ctx, &apiv1.FederationRelationshipSpec{TrustDomain: "p.test",
				BundleEndpointUrl: "https://p.test", BundleEndpointProfile: "https_acme"})
			return err
		}, codes.InvalidArgument, `profile "https_acme"`},
		{"endpoint ID of another trust domain", func() error {
			_, err := fx.srv.CreateFederationRelationship(ctx, &apiv1.FederationRelationshipSpec{TrustDomain: "p.test",
				BundleEndpointUrl: "https://p.test", BundleEndpointProfile: "https_spiffe", EndpointSpiffeId: "spiffe://q.test/server",
				TrustDomainBundle: document(t, "p.test", 1, newCA(t, "spiffe://p.test"))})
			return err
		}, codes.InvalidArgument, "not in trust domain"},
		{"bundle naming another trust domain", func() error {
			_, err := fx.srv.CreateFederationRelationship(ctx, &apiv1.FederationRelationshipSpec{TrustDomain: "p.test",
				BundleEndpointUrl: "https://p.test", BundleEndpointProfile: "https_web",
				TrustDomainBundle: document(t, "victim.test", 1, newCA(t, "spiffe://victim.test"))})
			return err
		}, codes.InvalidArgument, "trust domain bundle"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wantCode(t, tt.call(), tt.wantCode, tt.wantErr)
		})
	}
	if rec := fx.audit.find("federation_delete"); rec["result"] != "rejected" {
		t.Fatalf("refused delete not audited: %v", rec)
	}
	spec.BundleEndpointUrl, spec.TrustDomainBundle = "https://dyn.test:9443", nil
	if r, err := fx.srv.UpdateFederationRelationship(ctx, spec); err != nil || r.GetBundleEndpointUrl() != spec.BundleEndpointUrl || r.GetX509Authorities() != 1 {
		t.Fatalf("update: %v, %v", r, err)
	}
	if _, err := fx.srv.DeleteFederationRelationship(ctx, &apiv1.DeleteFederationRelationshipRequest{TrustDomain: "dyn.test"}); err != nil {
		t.Fatal(err)
	}
	list, err := fx.srv.ListFederationRelationships(ctx, &apiv1.ListFederationRelationshipsRequest{})
	if err != nil || len(list.GetRelationships()) != 1 || list.GetRelationships()[0].GetTrustDomain() != "web.test" {
		t.Fatalf("after delete: %v, %v", list, err)
	}
}
