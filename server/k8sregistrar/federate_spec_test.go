package k8sregistrar

import (
	"strings"
	"testing"

	"github.com/hallmarkid/hallmark/server/federation"
)

const partnerBundle = `{"keys":[],"spiffe_sequence":1}`

func TestRelationshipOf(t *testing.T) {
	web := BundleEndpointProfile{Type: "https_web"}
	spf := BundleEndpointProfile{Type: "https_spiffe", EndpointSPIFFEID: "spiffe://partner.example/server"}
	for _, tc := range []struct {
		name    string
		spec    ClusterFederatedTrustDomainSpec
		wantErr string
	}{
		{"https_web", ClusterFederatedTrustDomainSpec{TrustDomain: "partner.example", BundleEndpointURL: "https://p/b", BundleEndpointProfile: web}, ""},
		{"https_spiffe with bundle", ClusterFederatedTrustDomainSpec{TrustDomain: "partner.example", BundleEndpointURL: "https://p/b",
			BundleEndpointProfile: spf, TrustDomainBundle: partnerBundle}, ""},
		{"bad trust domain", ClusterFederatedTrustDomainSpec{TrustDomain: "Bad TD", BundleEndpointProfile: web}, "trustDomain"},
		{"unknown profile", ClusterFederatedTrustDomainSpec{TrustDomain: "partner.example", BundleEndpointProfile: BundleEndpointProfile{Type: "http"}}, "not https_web"},
		{"web with endpoint ID", ClusterFederatedTrustDomainSpec{TrustDomain: "partner.example",
			BundleEndpointProfile: BundleEndpointProfile{Type: "https_web", EndpointSPIFFEID: "spiffe://partner.example/s"}}, "https_spiffe only"},
		{"spiffe without endpoint ID", ClusterFederatedTrustDomainSpec{TrustDomain: "partner.example",
			BundleEndpointProfile: BundleEndpointProfile{Type: "https_spiffe"}}, "endpointSPIFFEID"},
		{"bad bundle", ClusterFederatedTrustDomainSpec{TrustDomain: "partner.example", BundleEndpointProfile: web, TrustDomainBundle: "{"}, "trustDomainBundle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rel, b, err := relationshipOf(tc.spec)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rel.Owner != federation.OwnerK8sRegistrar || rel.URL != tc.spec.BundleEndpointURL || string(rel.Profile) != tc.spec.BundleEndpointProfile.Type {
				t.Fatalf("relationship %+v", rel)
			}
			if (b != nil) != (tc.spec.TrustDomainBundle != "") {
				t.Fatalf("bundle %v", b)
			}
		})
	}
}

// FuzzRelationshipOf: no spec an object can carry panics the registrar.
func FuzzRelationshipOf(f *testing.F) {
	f.Add("partner.example", "https_spiffe", "spiffe://partner.example/s", partnerBundle)
	f.Add("partner.example", "https_web", "", "")
	f.Add("x", "https_spiffe", "spiffe://x/", `{"keys":[{"use":"x509-svid","kty":"EC"}]}`)
	f.Fuzz(func(t *testing.T, tdName, profile, endpoint, bundle string) {
		rel, _, err := relationshipOf(ClusterFederatedTrustDomainSpec{TrustDomain: tdName, BundleEndpointProfile: BundleEndpointProfile{Type: profile, EndpointSPIFFEID: endpoint}, TrustDomainBundle: bundle})
		if err == nil && rel.TrustDomain.IsZero() {
			t.Fatal("accepted an empty trust domain")
		}
	})
}
