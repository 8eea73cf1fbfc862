package k8sregistrar

import (
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/hallmarkid/hallmark/registration"
)

// builtinName names the built-in default ClusterSPIFFEID's entries; no
// Kubernetes object can have this name (':' is not allowed in names).
const builtinName = "builtin:" + DefaultClusterSPIFFEIDName

// ours reports whether an object with className is this registrar's, as
// spire-controller-manager decides: its class, or no class while
// watch_classless holds. Others belong to another controller and are
// neither reconciled nor given a status.
func (r *Registrar) ours(className string) bool {
	if className == "" {
		return r.cfg.WatchClassless
	}
	return className == r.cfg.ClassName
}

// csidObjects lists the ClusterSPIFFEIDs that are ours, by name.
func (r *Registrar) csidObjects() []*ClusterSPIFFEID {
	objs, err := r.csids.List(labels.Everything())
	if err != nil {
		return nil
	}
	var out []*ClusterSPIFFEID
	for _, o := range objs {
		c := new(ClusterSPIFFEID)
		if err := fromUnstructured(o, c); err != nil {
			// The CRD's schema makes this unreachable; such an object
			// is refused with the error in its status.
			m := metaOf(o)
			c.Name, c.UID, c.Generation = m.GetName(), m.GetUID(), m.GetGeneration()
			c.Spec.SPIFFEIDTemplate = ""
			c.Annotations = map[string]string{decodeErrKey: err.Error()}
		}
		if r.ours(c.Spec.ClassName) {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

const decodeErrKey = "hallmark.internal/decode-error"

// specList compiles the ClusterSPIFFEIDs that are ours (from a cache kept
// by UID and generation), in name order, then the built-in default.
func (r *Registrar) specList() []*spec {
	objs := r.csidObjects()
	specs := make([]*spec, 0, len(objs)+1)
	live := make(map[string]bool, len(objs))
	for _, c := range objs {
		k := string(c.UID) + "/" + strconv.FormatInt(c.Generation, 10)
		live[k] = true
		s, ok := r.st.specs[k]
		if !ok {
			if msg := c.Annotations[decodeErrKey]; msg != "" {
				s = &spec{name: c.Name, generation: c.Generation, err: errors.New(msg), errReason: ReasonInvalidSpec}
			} else {
				s = compile(c, r.cfg.TrustDomain)
			}
			r.st.specs[k] = s
		}
		specs = append(specs, s)
	}
	for k := range r.st.specs {
		if !live[k] {
			delete(r.st.specs, k)
		}
	}
	if r.builtin != nil {
		specs = append(specs, r.builtin)
	}
	return specs
}

// builtinSpec is the built-in default ClusterSPIFFEID, compiled.
func builtinSpec(td spiffeid.TrustDomain) *spec {
	def := &ClusterSPIFFEID{Spec: ClusterSPIFFEIDSpec{SPIFFEIDTemplate: DefaultSPIFFEIDTemplate, Fallback: true}}
	def.Name = builtinName
	return compile(def, td)
}

// cseObjects lists the ClusterStaticEntries that are ours, by name.
func (r *Registrar) cseObjects() []*ClusterStaticEntry {
	objs, err := r.cses.List(labels.Everything())
	if err != nil {
		return nil
	}
	var out []*ClusterStaticEntry
	for _, o := range objs {
		c := new(ClusterStaticEntry)
		if err := fromUnstructured(o, c); err != nil {
			m := metaOf(o)
			c.Name, c.Generation = m.GetName(), m.GetGeneration()
			c.Annotations = map[string]string{decodeErrKey: err.Error()}
		}
		if r.ours(c.Spec.ClassName) {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// staticDesired returns the entries of the ClusterStaticEntries, by ID,
// and each one's result, by name. Of several giving the same entry, the
// first by name is set and the others are masked.
func (r *Registrar) staticDesired() (map[string]registration.Entry, map[string]staticResult) {
	want := make(map[string]registration.Entry)
	results := make(map[string]staticResult)
	seen := make(map[string]bool)
	for _, c := range r.cseObjects() {
		id := StaticEntryID(r.cfg.Cluster, c.Name)
		e, reason, err := r.staticEntry(c)
		if err != nil {
			results[c.Name] = staticResult{id: id, err: err, reason: reason}
			continue
		}
		if k := e.Key(); seen[k] {
			results[c.Name] = staticResult{id: id, masked: true}
			continue
		} else {
			seen[k] = true
		}
		e.ID = id
		want[id] = e
		results[c.Name] = staticResult{id: id}
	}
	return want, results
}

// staticEntry checks a ClusterStaticEntry and builds its entry.
func (r *Registrar) staticEntry(c *ClusterStaticEntry) (registration.Entry, string, error) {
	if msg := c.Annotations[decodeErrKey]; msg != "" {
		return registration.Entry{}, ReasonInvalidSpec, errors.New(msg)
	}
	s := c.Spec
	switch {
	case s.Admin:
		return registration.Entry{}, ReasonUnsupported, errors.New("admin is not supported: Hallmark's admin API is served only on the server's local socket, no SVID grants access to it")
	case s.Downstream:
		return registration.Entry{}, ReasonUnsupported, errors.New("downstream is not supported: Hallmark does not sign CA certificates for downstream servers")
	case s.StoreSVID:
		return registration.Entry{}, ReasonUnsupported, errors.New("storeSVID is not supported: Hallmark has no SVID store")
	}
	td := r.cfg.TrustDomain
	id, err := checkWorkloadID(s.SPIFFEID, td)
	if err != nil {
		return registration.Entry{}, ReasonInvalidSpec, fmt.Errorf("spiffeID: %w", err)
	}
	parent, err := registration.ParseIDInDomain(s.ParentID, td)
	if err != nil {
		return registration.Entry{}, ReasonInvalidSpec, fmt.Errorf("parentID: %w", err)
	}
	e := registration.Entry{SPIFFEID: id, ParentID: parent, X509SVIDTTL: s.X509SVIDTTL.Duration,
		JWTSVIDTTL: s.JWTSVIDTTL.Duration, Hint: s.Hint}
	for _, v := range s.Selectors {
		sel, err := registration.ParseSelector(v)
		if err != nil {
			return registration.Entry{}, ReasonInvalidSpec, fmt.Errorf("selectors: %w", err)
		}
		e.Selectors = append(e.Selectors, sel)
	}
	e.Selectors = normSelectors(e.Selectors)
	for _, d := range s.DNSNames {
		e.DNSNames = appendUnique(e.DNSNames, d)
	}
	if e.FederatesWith, err = federatesWith(s.FederatesWith, td); err != nil {
		return registration.Entry{}, ReasonInvalidSpec, err
	}
	if err := e.Validate(td); err != nil {
		return registration.Entry{}, ReasonInvalidSpec, err
	}
	return e, "", nil
}
