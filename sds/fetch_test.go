package sds_test

import (
	"context"
	"os"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/hallmarkid/hallmark/sds"
)

func TestFetchNames(t *testing.T) {
	e := newEnv(t)
	w1 := mkEntry("e1", "/w1", 1, uidSelector(os.Getuid()))
	w2 := mkEntry("e2", "/w2", 1, uidSelector(os.Getuid()))
	theirs := mkEntry("e3", "/theirs", 1, uidSelector(424242))
	e.addEntries(w1, w2, theirs)

	tests := []struct {
		name     string
		names    []string
		wantIDs  map[string]string // secret name → SPIFFE ID of its certificate
		wantVals []string          // validation context names
		wantCode codes.Code
		wantErr  string
	}{
		{name: "default is the first SVID", names: []string{"default"}, wantIDs: map[string]string{"default": w1.SPIFFEID.String()}},
		{name: "ROOTCA", names: []string{"ROOTCA"}, wantVals: []string{"ROOTCA"}},
		{name: "ALL", names: []string{"ALL"}, wantVals: []string{"ALL"}},
		{name: "SPIFFE ID", names: []string{w2.SPIFFEID.String()}, wantIDs: map[string]string{w2.SPIFFEID.String(): w2.SPIFFEID.String()}},
		{name: "trust domain ID", names: []string{"spiffe://example.org"}, wantVals: []string{"spiffe://example.org"}},
		{name: "several, duplicates dropped", names: []string{"default", "ROOTCA", "default"},
			wantIDs: map[string]string{"default": w1.SPIFFEID.String()}, wantVals: []string{"ROOTCA"}},
		{name: "empty list is everything", names: nil,
			wantIDs:  map[string]string{w1.SPIFFEID.String(): w1.SPIFFEID.String(), w2.SPIFFEID.String(): w2.SPIFFEID.String()},
			wantVals: []string{"spiffe://example.org"}},
		{name: "another workload's SVID", names: []string{theirs.SPIFFEID.String()}, wantCode: codes.PermissionDenied, wantErr: "not entitled"},
		{name: "an SVID nobody has", names: []string{"spiffe://example.org/nobody"}, wantCode: codes.PermissionDenied, wantErr: "not entitled"},
		{name: "foreign trust domain", names: []string{"spiffe://other.org"}, wantCode: codes.NotFound, wantErr: "no bundle for trust domain"},
		{name: "unknown name", names: []string{"foo"}, wantCode: codes.InvalidArgument, wantErr: `unknown resource name "foo"`},
		{name: "bad SPIFFE ID", names: []string{"spiffe://EXAMPLE.org/w1"}, wantCode: codes.InvalidArgument, wantErr: "resource name"},
		{name: "file names disabled", names: []string{"file-root:/etc/ssl/certs/ca-certificates.crt"}, wantCode: codes.InvalidArgument, wantErr: "file_dir"},
		{name: "malformed file-cert", names: []string{"file-cert:/a.pem"}, wantCode: codes.InvalidArgument, wantErr: "file-cert:<cert path>~<key path>"},
		{name: "one bad name fails all", names: []string{"default", "nope"}, wantCode: codes.InvalidArgument, wantErr: "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := e.client().FetchSecrets(ctxT(t), &discoveryv3.DiscoveryRequest{TypeUrl: sds.SecretTypeURL, ResourceNames: tt.names})
			if tt.wantErr != "" {
				if status.Code(err) != tt.wantCode || !errContains(err, tt.wantErr) {
					t.Fatalf("err = %v, want %s containing %q", err, tt.wantCode, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			validateResponse(t, resp)
			sec := secrets(t, resp)
			if len(sec) != len(tt.wantIDs)+len(tt.wantVals) {
				t.Fatalf("got %d secrets, want %d", len(sec), len(tt.wantIDs)+len(tt.wantVals))
			}
			for name, id := range tt.wantIDs {
				if sec[name] == nil || idOf(t, sec[name]) != id {
					t.Fatalf("%q: %v", name, sec[name])
				}
			}
			for _, name := range tt.wantVals {
				roots, _ := rootsOf(t, sec[name])
				if len(roots[""]) != 1 || !roots[""][0].Equal(e.ca.Certificate()) {
					t.Fatalf("%q: roots %v", name, roots)
				}
			}
		})
	}
}

func TestFetchCustomNames(t *testing.T) {
	e := newEnv(t, func(c *sds.Config) {
		c.DefaultSVIDName, c.DefaultBundleName, c.DefaultAllBundlesName = "my-cert", "my-ca", "my-all"
	})
	e.addEntries(mkEntry("e1", "/w1", 1, uidSelector(os.Getuid())))
	resp, err := e.client().FetchSecrets(ctxT(t), &discoveryv3.DiscoveryRequest{ResourceNames: []string{"my-cert", "my-ca", "my-all"}})
	if err != nil {
		t.Fatal(err)
	}
	if sec := secrets(t, resp); sec["my-cert"].GetTlsCertificate() == nil || sec["my-ca"].GetValidationContext() == nil || sec["my-all"].GetValidationContext() == nil {
		t.Fatalf("secrets: %v", sec)
	}
	_, err = e.client().FetchSecrets(ctxT(t), &discoveryv3.DiscoveryRequest{ResourceNames: []string{"default"}})
	if status.Code(err) != codes.InvalidArgument || !errContains(err, `"my-cert"`) {
		t.Fatalf("default with custom names: %v", err)
	}
}

// TestFetchNoEntries: a caller without an identity gets no certificate,
// but the trust bundles (ROOTCA, ALL: the own bundle alone, the own trust
// domain by ID), as SPIRE serves them; a foreign trust domain is NotFound.
func TestFetchNoEntries(t *testing.T) {
	e := newEnv(t)
	e.addEntries(mkEntry("e1", "/w1", 1, uidSelector(424242)))
	for _, names := range [][]string{{"default"}, {"spiffe://example.org/w1"}, nil} {
		_, err := e.client().FetchSecrets(ctxT(t), &discoveryv3.DiscoveryRequest{ResourceNames: names})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("%v: err = %v, want PermissionDenied", names, err)
		}
	}
	resp, err := e.client().FetchSecrets(ctxT(t), &discoveryv3.DiscoveryRequest{ResourceNames: []string{"ROOTCA", "ALL", "spiffe://example.org"}})
	if err != nil {
		t.Fatalf("bundles for a caller without identity: %v", err)
	}
	sec := secrets(t, resp)
	if len(sec) != 3 {
		t.Fatalf("secrets: %v", sec)
	}
	for name, s := range sec {
		roots, _ := rootsOf(t, s)
		n := 0
		for _, r := range roots {
			n += len(r)
		}
		if n != 1 {
			t.Fatalf("%s: roots %v, want the own CA alone", name, roots)
		}
	}
	_, err = e.client().FetchSecrets(ctxT(t), &discoveryv3.DiscoveryRequest{ResourceNames: []string{"spiffe://other.org"}})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("foreign trust domain: %v, want NotFound", err)
	}
}

func TestValidatorFormat(t *testing.T) {
	meta := func(v *structpb.Value) *corev3.Node {
		n := envoyNode(1, 30)
		n.Metadata = &structpb.Struct{Fields: map[string]*structpb.Value{sds.NodeMetadataDisableSPIFFE: v}}
		return n
	}
	tests := []struct {
		name       string
		node       *corev3.Node
		disable    bool
		wantSPIFFE bool
	}{
		{name: "no node", node: nil},
		{name: "no build version", node: &corev3.Node{Id: "x", UserAgentName: "grpc-go"}},
		{name: "envoy 1.17", node: envoyNode(1, 17)},
		{name: "envoy 1.18", node: envoyNode(1, 18), wantSPIFFE: true},
		{name: "envoy 1.36", node: envoyNode(1, 36), wantSPIFFE: true},
		{name: "envoy 2.0", node: envoyNode(2, 0), wantSPIFFE: true},
		{name: "metadata asks for trusted_ca", node: meta(structpb.NewBoolValue(true))},
		{name: "metadata string true", node: meta(structpb.NewStringValue("true"))},
		{name: "metadata false", node: meta(structpb.NewBoolValue(false)), wantSPIFFE: true},
		{name: "disabled by config", node: envoyNode(1, 30), disable: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(c *sds.Config) { c.DisableSPIFFECertValidation = tt.disable })
			e.addEntries(mkEntry("e1", "/w1", 1, uidSelector(os.Getuid())))
			resp, err := e.client().FetchSecrets(ctxT(t), &discoveryv3.DiscoveryRequest{Node: tt.node, ResourceNames: []string{"ROOTCA", "ALL"}})
			if err != nil {
				t.Fatal(err)
			}
			for name, s := range secrets(t, resp) {
				roots, spiffe := rootsOf(t, s)
				if spiffe != tt.wantSPIFFE {
					t.Fatalf("%s: SPIFFE validator %v, want %v", name, spiffe, tt.wantSPIFFE)
				}
				key := ""
				if spiffe {
					key = "example.org"
				}
				if len(roots[key]) != 1 || !roots[key][0].Equal(e.ca.Certificate()) {
					t.Fatalf("%s: roots %v", name, roots)
				}
			}
		})
	}
}

func TestSecurityHeader(t *testing.T) {
	tests := []struct {
		name    string
		extra   bool
		opt     func(*sds.Config)
		header  bool
		wantErr string
	}{
		{name: "workload API socket, header", header: true},
		// The default (as SPIRE's SDS): Envoy configured for SPIRE sends none.
		{name: "workload API socket, no header"},
		{name: "workload API socket, header required", opt: func(c *sds.Config) { c.AllowMissingSecurityHeader = false },
			wantErr: "security header missing"},
		{name: "extra socket, no header (Istio)", extra: true},
		{name: "extra socket, header", extra: true, header: true},
		{name: "extra socket, required", extra: true, opt: func(c *sds.Config) { c.ExtraSocketRequireSecurityHeader = true },
			wantErr: "security header missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []envOpt
			if tt.opt != nil {
				opts = append(opts, tt.opt)
			}
			e := newEnvSocket(t, tt.extra, opts...)
			e.addEntries(mkEntry("e1", "/w1", 1, uidSelector(os.Getuid())))
			ctx := context.Background()
			if tt.header {
				ctx = headerCtx(ctx)
			}
			_, err := e.client().FetchSecrets(ctx, &discoveryv3.DiscoveryRequest{ResourceNames: []string{"default"}})
			if !errContains(err, tt.wantErr) {
				t.Fatalf("FetchSecrets: %v, want %q", err, tt.wantErr)
			}
			if tt.wantErr != "" && status.Code(err) != codes.InvalidArgument {
				t.Fatalf("code %s", status.Code(err))
			}
			s := e.openStream(tt.header)
			s.send(&discoveryv3.DiscoveryRequest{ResourceNames: []string{"default"}})
			if tt.wantErr != "" {
				if err := s.streamErr(); status.Code(err) != codes.InvalidArgument || !errContains(err, tt.wantErr) {
					t.Fatalf("StreamSecrets: %v", err)
				}
				return
			}
			s.recv()
		})
	}
}
