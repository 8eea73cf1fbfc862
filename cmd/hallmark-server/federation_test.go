package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
)

// DeleteFederatedBundle deletes static.test (2 entries changed unless the
// mode is restrict) and refuses web.test, a relationship.
func (f *fakeAdmin) DeleteFederatedBundle(_ context.Context, req *apiv1.DeleteFederatedBundleRequest) (*apiv1.DeleteFederatedBundleResponse, error) {
	f.record(req)
	switch {
	case req.GetTrustDomain() != "static.test":
		return nil, status.Errorf(codes.FailedPrecondition, "federation: delete bundle: %q is configured with federates_with", req.GetTrustDomain())
	case req.GetMode() == "restrict":
		return nil, status.Error(codes.FailedPrecondition, `cannot delete the bundle of "static.test": 2 registration entries federate with it`)
	}
	return &apiv1.DeleteFederatedBundleResponse{EntriesChanged: 2}, nil
}

// TestBundleDeleteGolden: bundle delete -mode in SPIRE's output shapes
// (results[].status, trust_domain); a refusal prints its JSON and exits 1.
func TestBundleDeleteGolden(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantRC   int
		wantMode string
	}{
		{name: "bundle_delete_pretty", args: []string{"bundle", "delete", "-id", "static.test", "-mode", "dissociate"}, wantMode: "dissociate"},
		{name: "bundle_delete_json", args: []string{"bundle", "delete", "-id", "static.test", "-mode", "delete", "-output", "json"}, wantMode: "delete"},
		{name: "bundle_delete_restrict_json", args: []string{"bundle", "delete", "-id", "static.test", "-output", "json"}, wantRC: 1, wantMode: "restrict"},
		{name: "bundle_delete_relationship_json", args: []string{"bundle", "delete", "-id", "web.test", "-output", "json"}, wantRC: 1, wantMode: "restrict"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, sock := startFakeAdmin(t)
			rc, out, errOut := runCLI(append(tt.args, "-socketPath", sock)...)
			if rc != tt.wantRC {
				t.Fatalf("exit %d, want %d: %s", rc, tt.wantRC, errOut)
			}
			checkGolden(t, tt.name, out)
			reqs := f.requests()
			if len(reqs) != 1 || reqs[0].(*apiv1.DeleteFederatedBundleRequest).GetMode() != tt.wantMode {
				t.Fatalf("requests %v, want one with mode %q", reqs, tt.wantMode)
			}
		})
	}
	f, sock := startFakeAdmin(t)
	if rc, _, errOut := runCLI("bundle", "delete", "-id", "static.test", "-mode", "cascade", "-socketPath", sock); rc != 1 ||
		!strings.Contains(errOut, `-mode "cascade": want restrict, dissociate or delete`) || len(f.requests()) != 0 {
		t.Fatalf("unknown mode: exit %d %s", rc, errOut)
	}
}

// CreateFederationRelationship refuses dup.test (it exists) and creates
// any other.
func (f *fakeAdmin) CreateFederationRelationship(_ context.Context, req *apiv1.FederationRelationshipSpec) (*apiv1.FederationRelationship, error) {
	f.record(req)
	if req.GetTrustDomain() == "dup.test" {
		return nil, status.Error(codes.AlreadyExists, "federation: dup.test: a federation relationship with this trust domain already exists (use federation update)")
	}
	return fakeRelationship(req), nil
}

// UpdateFederationRelationship refuses partner.test, of the configuration.
func (f *fakeAdmin) UpdateFederationRelationship(_ context.Context, req *apiv1.FederationRelationshipSpec) (*apiv1.FederationRelationship, error) {
	f.record(req)
	if req.GetTrustDomain() == "partner.test" {
		return nil, status.Error(codes.FailedPrecondition, "federation: partner.test: configured in the server's federation block, which is read-only at run time: edit the configuration and restart")
	}
	return fakeRelationship(req), nil
}

func (f *fakeAdmin) DeleteFederationRelationship(_ context.Context, req *apiv1.DeleteFederationRelationshipRequest) (*apiv1.DeleteFederationRelationshipResponse, error) {
	f.record(req)
	if req.GetTrustDomain() == "partner.test" {
		return nil, status.Error(codes.FailedPrecondition, "federation: partner.test: configured in the server's federation block, which is read-only at run time: edit the configuration and restart")
	}
	return &apiv1.DeleteFederationRelationshipResponse{}, nil
}

func fakeRelationship(req *apiv1.FederationRelationshipSpec) *apiv1.FederationRelationship {
	return &apiv1.FederationRelationship{TrustDomain: req.GetTrustDomain(), BundleEndpointUrl: req.GetBundleEndpointUrl(),
		BundleEndpointProfile: req.GetBundleEndpointProfile(), EndpointSpiffeId: req.GetEndpointSpiffeId(), Dynamic: true,
		HasBundle: len(req.GetTrustDomainBundle()) > 0, X509Authorities: 1, RefreshIntervalSeconds: 300}
}

// TestFederationGolden: federation list|show|create|update|delete in
// SPIRE's JSON shapes (federation_relationships[], https_web {} or
// https_spiffe {endpoint_spiffe_id}, trust_domain_bundle, results[].status);
// a failed result prints its JSON and exits 1.
func TestFederationGolden(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "rels.json")
	if err := os.WriteFile(data, []byte(`{"federationRelationships": [
  {"trustDomain": "new.test", "bundleEndpointURL": "https://new.test/bundle", "bundleEndpointProfile": "https_web"},
  {"trustDomain": "dup.test", "bundleEndpointURL": "https://dup.test:8443", "bundleEndpointProfile": "https_spiffe",
   "endpointSPIFFEID": "spiffe://dup.test/spire/server", "trustDomainBundleFormat": "spiffe", "trustDomainBundle": {"keys": []}}
]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		args   []string
		wantRC int
	}{
		{name: "federation_list_json", args: []string{"federation", "list", "-output", "json"}},
		{name: "federation_list_pretty", args: []string{"federation", "list"}},
		{name: "federation_show_json", args: []string{"federation", "show", "-trustDomain", "partner.test", "-output", "json"}},
		{name: "federation_show_dynamic_json", args: []string{"federation", "show", "-trustDomain", "dyn.test", "-output", "json"}},
		{name: "federation_create_json", args: []string{"federation", "create", "-trustDomain", "new.test", "-bundleEndpointURL",
			"https://new.test:8443", "-bundleEndpointProfile", "https_spiffe", "-endpointSpiffeID", "spiffe://new.test/spire/server",
			"-trustDomainBundlePath", filepath.Join("testdata", "fake-ca.pem"), "-output", "json"}},
		{name: "federation_create_pretty", args: []string{"federation", "create", "-trustDomain", "new.test", "-bundleEndpointURL",
			"https://new.test/bundle", "-bundleEndpointProfile", "https_web"}},
		{name: "federation_create_data_json", args: []string{"federation", "create", "-data", data, "-output", "json"}, wantRC: 1},
		{name: "federation_update_configured_json", args: []string{"federation", "update", "-trustDomain", "partner.test",
			"-bundleEndpointURL", "https://partner.test/v2", "-bundleEndpointProfile", "https_web", "-output", "json"}, wantRC: 1},
		{name: "federation_delete_json", args: []string{"federation", "delete", "-id", "dyn.test", "-output", "json"}},
		{name: "federation_delete_pretty", args: []string{"federation", "delete", "-id", "dyn.test"}},
		{name: "federation_delete_configured_json", args: []string{"federation", "delete", "-id", "partner.test", "-output", "json"}, wantRC: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, sock := startFakeAdmin(t)
			rc, out, errOut := runCLI(append(tt.args, "-socketPath", sock)...)
			if rc != tt.wantRC {
				t.Fatalf("exit %d, want %d: %s", rc, tt.wantRC, errOut)
			}
			checkGolden(t, tt.name, out)
		})
	}
}

// TestFederationCreateRequests: what create sends for SPIRE's flags and
// -data, and what it refuses before dialing the server.
func TestFederationCreateRequests(t *testing.T) {
	f, sock := startFakeAdmin(t)
	rc, _, errOut := runCLI("federation", "create", "-trustDomain", "spiffe://new.test", "-bundleEndpointURL", "https://new.test:8443",
		"-bundleEndpointProfile", "https_spiffe", "-endpointSpiffeID", "spiffe://new.test/spire/server",
		"-trustDomainBundlePath", filepath.Join("testdata", "fake-ca.pem"), "-socketPath", sock)
	if rc != 0 {
		t.Fatalf("exit %d: %s", rc, errOut)
	}
	req := f.requests()[0].(*apiv1.FederationRelationshipSpec)
	if req.GetTrustDomain() != "new.test" || req.GetEndpointSpiffeId() != "spiffe://new.test/spire/server" ||
		!strings.Contains(string(req.GetTrustDomainBundle()), `"use":"x509-svid"`) {
		t.Fatalf("request %v", req)
	}
	for _, tt := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no trust domain", []string{"-bundleEndpointURL", "https://x"}, "-trustDomain is required"},
		{"no URL", []string{"-trustDomain", "x.test"}, "-bundleEndpointURL is required"},
		{"no profile", []string{"-trustDomain", "x.test", "-bundleEndpointURL", "https://x"}, `unknown bundle endpoint profile ""`},
		{"spiffe without ID", []string{"-trustDomain", "x.test", "-bundleEndpointURL", "https://x", "-bundleEndpointProfile", "https_spiffe"},
			"endpoint SPIFFE ID is required"},
		{"data and flags", []string{"-data", "x.json", "-trustDomain", "x.test"}, "cannot use other flags"},
		{"bad bundle file", []string{"-trustDomain", "x.test", "-bundleEndpointURL", "https://x", "-bundleEndpointProfile", "https_web",
			"-trustDomainBundlePath", "federation_test.go"}, "not PEM"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := len(f.requests())
			rc, _, errOut := runCLI(append([]string{"federation", "create", "-socketPath", sock}, tt.args...)...)
			if rc != 1 || !strings.Contains(errOut, tt.wantErr) || len(f.requests()) != before {
				t.Fatalf("exit %d, %q (want %q), %d requests sent", rc, errOut, tt.wantErr, len(f.requests())-before)
			}
		})
	}
}

// SetFederatedBundle sets static bundles and refuses our own trust domain.
func (f *fakeAdmin) SetFederatedBundle(_ context.Context, req *apiv1.SetFederatedBundleRequest) (*apiv1.SetFederatedBundleResponse, error) {
	f.record(req)
	if req.GetBundle().GetTrustDomain() == "example.org" {
		return nil, status.Error(codes.InvalidArgument, `"example.org" is this server's own trust domain, not a federated one (its bundle is `+"`bundle show`)")
	}
	return &apiv1.SetFederatedBundleResponse{Relationship: &apiv1.FederationRelationship{TrustDomain: req.GetBundle().GetTrustDomain(),
		Static: true, HasBundle: true, X509Authorities: 1}}, nil
}

func (f *fakeAdmin) RefreshFederatedBundle(_ context.Context, req *apiv1.RefreshFederatedBundleRequest) (*apiv1.FederationRelationship, error) {
	f.record(req)
	return &apiv1.FederationRelationship{TrustDomain: req.GetTrustDomain(), BundleEndpointUrl: "https://partner.test/bundle",
		BundleEndpointProfile: "https_web", HasBundle: true, X509Authorities: 1, LastAttempt: 1733400000, LastSuccess: 1733400000,
		RefreshIntervalSeconds: 300}, nil
}

// TestBundleSetRefreshGolden: bundle set and federation refresh -output
// json in SPIRE's shapes (results[].status with the bundle set; the OK
// status of a refresh).
func TestBundleSetRefreshGolden(t *testing.T) {
	ca := filepath.Join("testdata", "fake-ca.pem")
	tests := []struct {
		name   string
		args   []string
		wantRC int
	}{
		{name: "bundle_set_json", args: []string{"bundle", "set", "-id", "spiffe://static.test", "-path", ca, "-output", "json"}},
		{name: "bundle_set_own_json", args: []string{"bundle", "set", "-id", "example.org", "-path", ca, "-output", "json"}, wantRC: 1},
		{name: "federation_refresh_json", args: []string{"federation", "refresh", "-id", "partner.test", "-output", "json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, sock := startFakeAdmin(t)
			rc, out, errOut := runCLI(append(tt.args, "-socketPath", sock)...)
			if rc != tt.wantRC {
				t.Fatalf("exit %d, want %d: %s", rc, tt.wantRC, errOut)
			}
			checkGolden(t, tt.name, out)
		})
	}
}
