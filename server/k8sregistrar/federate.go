package k8sregistrar

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/apimachinery/pkg/api/equality"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/hallmarkid/hallmark/server/federation"
)

// Federator is what the registrar needs of the server's dynamic
// federation relationships (server/federation's Fetcher, adapted).
type Federator interface {
	List(ctx context.Context) ([]federation.Relationship, error)
	Create(ctx context.Context, rel federation.Relationship, b *spiffebundle.Bundle) error
	Update(ctx context.Context, rel federation.Relationship, b *spiffebundle.Bundle) error
	Delete(ctx context.Context, td spiffeid.TrustDomain) error
}

// cftdWant is one ClusterFederatedTrustDomain of ours, decoded.
type cftdWant struct {
	obj    ClusterFederatedTrustDomain
	conds  []metav1.Condition
	rel    federation.Relationship
	bundle *spiffebundle.Bundle
	err    error // invalid spec
}

// relationshipOf turns a ClusterFederatedTrustDomain spec into a dynamic
// relationship owned by the registrar.
func relationshipOf(s ClusterFederatedTrustDomainSpec) (federation.Relationship, *spiffebundle.Bundle, error) {
	td, err := spiffeid.TrustDomainFromString(s.TrustDomain)
	if err != nil {
		return federation.Relationship{}, nil, fmt.Errorf("trustDomain %q: %w", s.TrustDomain, err)
	}
	rel := federation.Relationship{TrustDomain: td, URL: s.BundleEndpointURL, Owner: federation.OwnerK8sRegistrar}
	switch s.BundleEndpointProfile.Type {
	case string(federation.ProfileHTTPSWeb):
		rel.Profile = federation.ProfileHTTPSWeb
		if s.BundleEndpointProfile.EndpointSPIFFEID != "" {
			return rel, nil, errors.New("bundleEndpointProfile: endpointSPIFFEID is for https_spiffe only")
		}
	case string(federation.ProfileHTTPSSPIFFE):
		rel.Profile = federation.ProfileHTTPSSPIFFE
		if rel.EndpointID, err = spiffeid.FromString(s.BundleEndpointProfile.EndpointSPIFFEID); err != nil {
			return rel, nil, fmt.Errorf("bundleEndpointProfile.endpointSPIFFEID %q: %w", s.BundleEndpointProfile.EndpointSPIFFEID, err)
		}
	default:
		return rel, nil, fmt.Errorf("bundleEndpointProfile.type %q is not https_web or https_spiffe", s.BundleEndpointProfile.Type)
	}
	var b *spiffebundle.Bundle
	if s.TrustDomainBundle != "" {
		if b, err = spiffebundle.Parse(td, []byte(s.TrustDomainBundle)); err != nil {
			return rel, nil, fmt.Errorf("trustDomainBundle: %w", err)
		}
	}
	return rel, b, nil
}

func sameRelationship(a, b federation.Relationship) bool {
	return a.TrustDomain == b.TrustDomain && a.URL == b.URL && a.Profile == b.Profile && a.EndpointID == b.EndpointID
}

// federationStatus applies the ClusterFederatedTrustDomain objects that
// are ours as dynamic federation relationships owned by the registrar
// (relationships of the server's federation block or of the CLI are never
// touched: an object naming one is reported as a conflict unless the
// federation block has it at the same endpoint), deletes the registrar's
// relationships no object asks for any more, and reports on each object.
// It writes nothing when everything is already as asked.
func (r *Registrar) federationStatus(ctx context.Context) error {
	objs, err := r.cftds.List(labels.Everything())
	if err != nil {
		return err
	}
	var wants []*cftdWant
	for _, o := range objs {
		w := &cftdWant{}
		cur := struct {
			Status struct {
				Conditions []metav1.Condition `json:"conditions,omitempty"`
			} `json:"status"`
		}{}
		if err := fromUnstructured(o, &w.obj); err != nil || !r.ours(w.obj.Spec.ClassName) {
			continue
		}
		_ = fromUnstructured(o, &cur)
		w.conds = cur.Status.Conditions
		w.rel, w.bundle, w.err = relationshipOf(w.obj.Spec)
		wants = append(wants, w)
	}
	sort.Slice(wants, func(i, j int) bool { return wants[i].obj.Name < wants[j].obj.Name })

	var errs []error
	var stored map[spiffeid.TrustDomain]federation.Relationship
	var listErr error
	if r.cfg.Federator != nil {
		var rels []federation.Relationship
		rels, listErr = r.cfg.Federator.List(ctx)
		stored = map[spiffeid.TrustDomain]federation.Relationship{}
		for _, rel := range rels {
			stored[rel.TrustDomain] = rel
		}
	}
	wanted := map[spiffeid.TrustDomain]bool{}
	for _, w := range wants {
		cond := r.applyOne(ctx, w, stored, listErr, wanted)
		next := append([]metav1.Condition(nil), w.conds...)
		apimeta.SetStatusCondition(&next, cond)
		if !equality.Semantic.DeepEqual(next, w.conds) {
			errs = append(errs, r.patchStatus(ctx, ClusterFederatedTrustDomains, w.obj.Name, map[string]any{"conditions": next}))
		}
	}
	if r.cfg.Federator != nil && listErr == nil {
		for td, rel := range stored {
			if rel.Owner == federation.OwnerK8sRegistrar && !wanted[td] {
				if err := r.cfg.Federator.Delete(ctx, td); err != nil {
					errs = append(errs, fmt.Errorf("k8sregistrar: delete federation relationship %s: %w", td.Name(), err))
				} else {
					r.log.Info("Federation relationship deleted", "trust_domain", td.Name())
				}
			}
		}
	}
	return errors.Join(errs...)
}

// applyOne brings the relationship of one object about and returns its
// Ready condition; wanted collects the trust domains the registrar keeps.
func (r *Registrar) applyOne(ctx context.Context, w *cftdWant, stored map[spiffeid.TrustDomain]federation.Relationship,
	listErr error, wanted map[spiffeid.TrustDomain]bool) metav1.Condition {
	gen := w.obj.Generation
	if w.err != nil {
		return condition(gen, false, ReasonInvalidSpec, w.err.Error())
	}
	td := w.rel.TrustDomain
	if r.cfg.Federation != nil {
		if url, ok := r.cfg.Federation(td); ok {
			// The block wins over a stored relationship (which the
			// server ignores): leave it, delete nothing.
			wanted[td] = true
			if url == w.rel.URL {
				return condition(gen, true, ReasonConfigured, "the server's federation block federates with "+td.Name()+" at this bundle endpoint")
			}
			return condition(gen, false, ReasonConflict, fmt.Sprintf("the server's federation block federates with %s at %s, not at %s; it is not overridden", td.Name(), url, w.rel.URL))
		}
	}
	if r.cfg.Federator == nil {
		return condition(gen, false, ReasonNotConfigured, fmt.Sprintf("this server applies no federation relationships from Kubernetes: add federates_with %q { bundle_endpoint_url = %q ... } to its federation block", td.Name(), w.rel.URL))
	}
	if listErr != nil {
		return condition(gen, false, ReasonApplyFailed, listErr.Error())
	}
	if wanted[td] {
		return condition(gen, false, ReasonConflict, "another ClusterFederatedTrustDomain (earlier by name) names "+td.Name())
	}
	cur, ok := stored[td]
	if ok && cur.Owner != federation.OwnerK8sRegistrar {
		return condition(gen, false, ReasonConflict, "a federation relationship with "+td.Name()+" created with the CLI (hallmark-server federation) exists; the registrar does not change it")
	}
	wanted[td] = true
	switch {
	case ok && sameRelationship(cur, w.rel):
		// As asked already: no write.
	case ok:
		if err := r.cfg.Federator.Update(ctx, w.rel, w.bundle); err != nil {
			return condition(gen, false, ReasonApplyFailed, err.Error())
		}
		r.log.Info("Federation relationship updated", "trust_domain", td.Name(), "url", w.rel.URL, "object", w.obj.Name)
	default:
		if err := r.cfg.Federator.Create(ctx, w.rel, w.bundle); err != nil {
			delete(wanted, td)
			return condition(gen, false, ReasonApplyFailed, err.Error())
		}
		r.log.Info("Federation relationship created", "trust_domain", td.Name(), "url", w.rel.URL, "object", w.obj.Name)
	}
	return condition(gen, true, ReasonApplied, "federation relationship with "+td.Name()+" at "+w.rel.URL+" applied")
}
