package sds_test

import (
	"crypto/x509"
	"os"
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hallmarkid/hallmark/agent/cache"
	"github.com/hallmarkid/hallmark/internal/x509util"
	"github.com/hallmarkid/hallmark/server/ca"
)

var (
	partner = spiffeid.RequireTrustDomainFromString("partner.test")
	other   = spiffeid.RequireTrustDomainFromString("other.test")
)

// foreignRoots returns the bundle of a real CA of td.
func foreignRoots(t testing.TB, td spiffeid.TrustDomain) []*x509.Certificate {
	t.Helper()
	a, err := ca.New(ca.Config{TrustDomain: td, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return a.Bundle()
}

func setFederated(e *env, complete bool, td spiffeid.TrustDomain, certs []*x509.Certificate) {
	e.cache.SetFederatedBundles(complete, []*cache.Bundle{{TrustDomain: td, Certs: certs, DER: x509util.ConcatDER(certs)}})
}

// trustDomainsOf returns the trust domains of a validation context and
// whether every one carries exactly want[td] as roots.
func trustDomainsOf(t *testing.T, roots map[string][]*x509.Certificate, want map[string][]*x509.Certificate) {
	t.Helper()
	if len(roots) != len(want) {
		t.Fatalf("trust domains %v, want %v", keys(roots), keys(want))
	}
	for td, certs := range want {
		got := roots[td]
		if len(got) != len(certs) {
			t.Fatalf("%s: %d roots, want %d", td, len(got), len(certs))
		}
		for i := range certs {
			if !got[i].Equal(certs[i]) {
				t.Fatalf("%s: root %d differs", td, i)
			}
		}
	}
}

func keys(m map[string][]*x509.Certificate) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestFederatedValidationContexts(t *testing.T) {
	e := newEnv(t)
	partnerRoots, otherRoots := foreignRoots(t, partner), foreignRoots(t, other)
	e.cache.SetFederatedBundles(true, []*cache.Bundle{
		{TrustDomain: partner, Certs: partnerRoots, DER: x509util.ConcatDER(partnerRoots)},
		{TrustDomain: other, Certs: otherRoots, DER: x509util.ConcatDER(otherRoots)},
	})
	mine := mkEntry("e1", "/w1", 1, uidSelector(os.Getuid()))
	mine.FederatesWith = []spiffeid.TrustDomain{partner}
	theirs := mkEntry("e2", "/theirs", 1, uidSelector(424242))
	theirs.FederatesWith = []spiffeid.TrustDomain{other}
	e.addEntries(mine, theirs)
	own := e.ca.Bundle()

	tests := []struct {
		name     string
		node     *corev3.Node
		names    []string
		want     map[string]map[string][]*x509.Certificate // secret → trust domain ("" for trusted_ca) → roots
		wantSVID bool
		wantCode codes.Code
		wantErr  string
	}{
		{name: "ALL: own and the caller's federated roots", node: envoyNode(1, 30), names: []string{"ALL"},
			want: map[string]map[string][]*x509.Certificate{"ALL": {"example.org": own, "partner.test": partnerRoots}}},
		{name: "ROOTCA stays the own bundle", node: envoyNode(1, 30), names: []string{"ROOTCA"},
			want: map[string]map[string][]*x509.Certificate{"ROOTCA": {"example.org": own}}},
		{name: "federated trust domain ID", node: envoyNode(1, 30), names: []string{"spiffe://partner.test"},
			want: map[string]map[string][]*x509.Certificate{"spiffe://partner.test": {"partner.test": partnerRoots}}},
		{name: "federated trust domain ID as trusted_ca", names: []string{"spiffe://partner.test"},
			want: map[string]map[string][]*x509.Certificate{"spiffe://partner.test": {"": partnerRoots}}},
		{name: "wildcard: SVID, own and federated bundles", node: envoyNode(1, 30), wantSVID: true,
			want: map[string]map[string][]*x509.Certificate{
				"spiffe://example.org": {"example.org": own}, "spiffe://partner.test": {"partner.test": partnerRoots}}},
		{name: "trust domain only another workload federates with", node: envoyNode(1, 30), names: []string{"spiffe://other.test"},
			wantCode: codes.NotFound, wantErr: `no bundle for trust domain "other.test"`},
		{name: "ALL as trusted_ca would mix trust domains", names: []string{"ALL"},
			wantCode: codes.FailedPrecondition, wantErr: "SPIFFE certificate validator"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := e.client().FetchSecrets(ctxT(t), &discoveryv3.DiscoveryRequest{Node: tt.node, ResourceNames: tt.names})
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
			wantN := len(tt.want)
			if tt.wantSVID {
				wantN++
				if s := sec[mine.SPIFFEID.String()]; s == nil || idOf(t, s) != mine.SPIFFEID.String() {
					t.Fatal("wildcard lacks the caller's SVID")
				}
			}
			if len(sec) != wantN {
				t.Fatalf("got %d secrets, want %d", len(sec), wantN)
			}
			for name, want := range tt.want {
				if sec[name] == nil {
					t.Fatalf("secret %q missing", name)
				}
				roots, _ := rootsOf(t, sec[name])
				trustDomainsOf(t, roots, want)
			}
		})
	}
}

// A stream on ALL is pushed the rotation and the revocation of a trust
// domain the caller federates with, and nothing for one it does not.
func TestFederatedBundleChangesPushed(t *testing.T) {
	e := newEnv(t)
	setFederated(e, true, partner, foreignRoots(t, partner))
	mine := mkEntry("e1", "/w1", 1, uidSelector(os.Getuid()))
	mine.FederatesWith = []spiffeid.TrustDomain{partner}
	e.addEntries(mine)
	own := e.ca.Bundle()

	s := e.openStream(true)
	s.send(&discoveryv3.DiscoveryRequest{Node: envoyNode(1, 30), ResourceNames: []string{"ALL"}})
	r := s.recv()
	s.send(&discoveryv3.DiscoveryRequest{VersionInfo: r.VersionInfo, ResponseNonce: r.Nonce, ResourceNames: []string{"ALL"}})

	setFederated(e, false, other, foreignRoots(t, other))
	s.none(200 * time.Millisecond)

	rotated := foreignRoots(t, partner)
	setFederated(e, false, partner, rotated)
	r = s.recv()
	roots, _ := rootsOf(t, secrets(t, r)["ALL"])
	trustDomainsOf(t, roots, map[string][]*x509.Certificate{"example.org": own, "partner.test": rotated})
	s.send(&discoveryv3.DiscoveryRequest{VersionInfo: r.VersionInfo, ResponseNonce: r.Nonce, ResourceNames: []string{"ALL"}})

	e.cache.SetFederatedBundles(false, []*cache.Bundle{{TrustDomain: partner}})
	r = s.recv()
	roots, _ = rootsOf(t, secrets(t, r)["ALL"])
	trustDomainsOf(t, roots, map[string][]*x509.Certificate{"example.org": own})
}
