package main

import (
	"context"
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
