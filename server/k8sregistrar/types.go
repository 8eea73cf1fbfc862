package k8sregistrar

import (
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Group and version of SPIRE's CRDs.
const (
	Group   = "spire.spiffe.io"
	Version = "v1alpha1"
)

// The resources the registrar watches.
var (
	ClusterSPIFFEIDs             = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "clusterspiffeids"}
	ClusterStaticEntries         = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "clusterstaticentries"}
	ClusterFederatedTrustDomains = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "clusterfederatedtrustdomains"}
)

// ClusterSPIFFEID is spire-controller-manager's ClusterSPIFFEID, field for
// field (json names as SPIRE's).
type ClusterSPIFFEID struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              ClusterSPIFFEIDSpec   `json:"spec"`
	Status            ClusterSPIFFEIDStatus `json:"status,omitempty"`
}

// ClusterSPIFFEIDSpec is the desired shape of the identity of the pods it
// selects; the templates see [TemplateData].
type ClusterSPIFFEIDSpec struct {
	SPIFFEIDTemplate          string                `json:"spiffeIDTemplate"`
	TTL                       metav1.Duration       `json:"ttl,omitempty"`
	JWTTTL                    metav1.Duration       `json:"jwtTtl,omitempty"`
	DNSNameTemplates          []string              `json:"dnsNameTemplates,omitempty"`
	WorkloadSelectorTemplates []string              `json:"workloadSelectorTemplates,omitempty"`
	FederatesWith             []string              `json:"federatesWith,omitempty"`
	NamespaceSelector         *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
	PodSelector               *metav1.LabelSelector `json:"podSelector,omitempty"`
	Admin                     bool                  `json:"admin,omitempty"`
	Downstream                bool                  `json:"downstream,omitempty"`
	AutoPopulateDNSNames      bool                  `json:"autoPopulateDNSNames,omitempty"`
	ClassName                 string                `json:"className,omitempty"`
	Fallback                  bool                  `json:"fallback,omitempty"`
	Hint                      string                `json:"hint,omitempty"`
}

// ClusterSPIFFEIDStatus is SPIRE's stats plus Hallmark's conditions.
type ClusterSPIFFEIDStatus struct {
	Stats      ClusterSPIFFEIDStats `json:"stats"`
	Conditions []metav1.Condition   `json:"conditions,omitempty"`
}

// ClusterSPIFFEIDStats are SPIRE's reconciliation statistics.
type ClusterSPIFFEIDStats struct {
	NamespacesSelected     int `json:"namespacesSelected"`
	NamespacesIgnored      int `json:"namespacesIgnored"`
	PodsSelected           int `json:"podsSelected"`
	PodEntryRenderFailures int `json:"podEntryRenderFailures"`
	EntriesMasked          int `json:"entriesMasked"`
	EntriesToSet           int `json:"entriesToSet"`
	EntryFailures          int `json:"entryFailures"`
}

// ClusterStaticEntry is spire-controller-manager's ClusterStaticEntry.
type ClusterStaticEntry struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              ClusterStaticEntrySpec   `json:"spec"`
	Status            ClusterStaticEntryStatus `json:"status,omitempty"`
}

// ClusterStaticEntrySpec is one registration entry, given literally.
type ClusterStaticEntrySpec struct {
	SPIFFEID      string          `json:"spiffeID"`
	ParentID      string          `json:"parentID"`
	Selectors     []string        `json:"selectors"`
	FederatesWith []string        `json:"federatesWith,omitempty"`
	X509SVIDTTL   metav1.Duration `json:"x509SVIDTTL,omitempty"`
	JWTSVIDTTL    metav1.Duration `json:"jwtSVIDTTL,omitempty"`
	DNSNames      []string        `json:"dnsNames,omitempty"`
	Hint          string          `json:"hint,omitempty"`
	Admin         bool            `json:"admin,omitempty"`
	Downstream    bool            `json:"downstream,omitempty"`
	StoreSVID     bool            `json:"storeSVID,omitempty"`
	ClassName     string          `json:"className,omitempty"`
}

// ClusterStaticEntryStatus is SPIRE's status plus Hallmark's conditions.
type ClusterStaticEntryStatus struct {
	Rendered   bool               `json:"rendered"`
	Masked     bool               `json:"masked"`
	Set        bool               `json:"set"`
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ClusterFederatedTrustDomain is spire-controller-manager's
// ClusterFederatedTrustDomain.
type ClusterFederatedTrustDomain struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              ClusterFederatedTrustDomainSpec `json:"spec"`
}

// ClusterFederatedTrustDomainSpec is a federation relationship.
type ClusterFederatedTrustDomainSpec struct {
	TrustDomain           string                `json:"trustDomain"`
	BundleEndpointURL     string                `json:"bundleEndpointURL"`
	BundleEndpointProfile BundleEndpointProfile `json:"bundleEndpointProfile"`
	TrustDomainBundle     string                `json:"trustDomainBundle,omitempty"`
	ClassName             string                `json:"className,omitempty"`
}

// BundleEndpointProfile is https_web or https_spiffe (with the endpoint's
// SPIFFE ID).
type BundleEndpointProfile struct {
	Type             string `json:"type"`
	EndpointSPIFFEID string `json:"endpointSPIFFEID,omitempty"`
}

// fromUnstructured decodes an informer's object into out (one of the
// types above).
func fromUnstructured(obj any, out any) error {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return fmt.Errorf("k8sregistrar: unexpected object %T", obj)
	}
	b, err := json.Marshal(u.Object)
	if err != nil {
		return fmt.Errorf("k8sregistrar: %s: %w", u.GetName(), err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("k8sregistrar: %s %s: %w", u.GetKind(), u.GetName(), err)
	}
	return nil
}
