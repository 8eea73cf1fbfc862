package k8sregistrar

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/template"
	"text/template/parse"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/hallmarkid/hallmark/registration"
)

// MaxTemplateOutput bounds what one template may render, in bytes (a
// SPIFFE ID's limit): a template that loops or prints whole objects fails
// instead of growing without bound.
const MaxTemplateOutput = registration.MaxIDLen

// MaxTemplates bounds the DNS name and selector templates of one
// ClusterSPIFFEID (the entry limits).
const MaxTemplates = registration.MaxDNSNames

// TemplateData is what ClusterSPIFFEID templates see, named as
// spire-controller-manager names it: {{ .TrustDomain }}, {{ .ClusterName }},
// {{ .ClusterDomain }}, {{ .PodMeta.Namespace }}, {{ .PodSpec.ServiceAccountName }},
// {{ .NodeMeta.Name }}, {{ .NodeSpec.ProviderID }}, ...
type TemplateData struct {
	TrustDomain   string
	ClusterName   string
	ClusterDomain string
	PodMeta       *metav1.ObjectMeta
	PodSpec       *corev1.PodSpec
	NodeMeta      *metav1.ObjectMeta
	NodeSpec      *corev1.NodeSpec
}

// spec is a ClusterSPIFFEID compiled once per generation: its templates
// parsed, its selectors built and its fixed fields checked. err is set
// when the object can produce no entry at all (reported in its status).
type spec struct {
	name       string
	generation int64
	src        ClusterSPIFFEIDSpec
	id         *template.Template
	dns        []*template.Template
	sels       []*template.Template
	nsSel      labels.Selector
	podSel     labels.Selector
	federates  []spiffeid.TrustDomain
	err        error
	errReason  string
}

// Condition reasons for a ClusterSPIFFEID or ClusterStaticEntry that
// produces nothing.
const (
	ReasonInvalidSpec = "InvalidSpec"
	ReasonUnsupported = "Unsupported"
)

// compile checks a ClusterSPIFFEID's fixed fields and parses its templates.
func compile(c *ClusterSPIFFEID, td spiffeid.TrustDomain) *spec {
	s := &spec{name: c.Name, generation: c.Generation, src: c.Spec}
	fail := func(reason string, err error) *spec {
		s.err, s.errReason = err, reason
		return s
	}
	// Hallmark serves its admin API only on a local socket and signs no
	// downstream CA: such entries would be stored and ignored, so the
	// object is refused instead (see docs/kubernetes-registrar.md).
	if c.Spec.Admin {
		return fail(ReasonUnsupported, errors.New("admin is not supported: Hallmark's admin API is served only on the server's local socket, no SVID grants access to it"))
	}
	if c.Spec.Downstream {
		return fail(ReasonUnsupported, errors.New("downstream is not supported: Hallmark does not sign CA certificates for downstream servers"))
	}
	var err error
	if s.id, err = parseTemplate("spiffeIDTemplate", c.Spec.SPIFFEIDTemplate); err != nil {
		return fail(ReasonInvalidSpec, err)
	}
	if len(c.Spec.DNSNameTemplates) > MaxTemplates || len(c.Spec.WorkloadSelectorTemplates) > MaxTemplates {
		return fail(ReasonInvalidSpec, fmt.Errorf("more than %d dnsNameTemplates or workloadSelectorTemplates", MaxTemplates))
	}
	for i, t := range c.Spec.DNSNameTemplates {
		pt, err := parseTemplate(fmt.Sprintf("dnsNameTemplates[%d]", i), t)
		if err != nil {
			return fail(ReasonInvalidSpec, err)
		}
		s.dns = append(s.dns, pt)
	}
	for i, t := range c.Spec.WorkloadSelectorTemplates {
		pt, err := parseTemplate(fmt.Sprintf("workloadSelectorTemplates[%d]", i), t)
		if err != nil {
			return fail(ReasonInvalidSpec, err)
		}
		s.sels = append(s.sels, pt)
	}
	if s.nsSel, err = labelSelector(c.Spec.NamespaceSelector); err != nil {
		return fail(ReasonInvalidSpec, fmt.Errorf("namespaceSelector: %w", err))
	}
	if s.podSel, err = labelSelector(c.Spec.PodSelector); err != nil {
		return fail(ReasonInvalidSpec, fmt.Errorf("podSelector: %w", err))
	}
	if s.federates, err = federatesWith(c.Spec.FederatesWith, td); err != nil {
		return fail(ReasonInvalidSpec, err)
	}
	if err := checkTTLs(c.Spec.TTL.Duration, c.Spec.JWTTTL.Duration); err != nil {
		return fail(ReasonInvalidSpec, err)
	}
	return s
}

func parseTemplate(name, text string) (*template.Template, error) {
	if text == "" {
		return nil, fmt.Errorf("%s is empty", name)
	}
	if len(text) > MaxTemplateOutput {
		return nil, fmt.Errorf("%s is longer than %d bytes", name, MaxTemplateOutput)
	}
	t, err := template.New(name).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(t.Templates()) > 1 {
		return nil, fmt.Errorf("%s: define and block are not allowed", name)
	}
	if err := checkNodes(t.Tree.Root); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return t, nil
}

// checkNodes refuses range and template actions: without loops or calls a
// template's rendering cost is bounded by its own size, whatever the pod
// (spire-controller-manager's documented templates need neither).
func checkNodes(n parse.Node) error {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return nil
		}
		for _, c := range n.Nodes {
			if err := checkNodes(c); err != nil {
				return err
			}
		}
	case *parse.IfNode:
		return errors.Join(checkNodes(n.List), checkNodes(n.ElseList))
	case *parse.WithNode:
		return errors.Join(checkNodes(n.List), checkNodes(n.ElseList))
	case *parse.RangeNode:
		return errors.New("range is not allowed")
	case *parse.TemplateNode:
		return errors.New("template calls are not allowed")
	}
	return nil
}

func labelSelector(ls *metav1.LabelSelector) (labels.Selector, error) {
	if ls == nil {
		return labels.Everything(), nil
	}
	return metav1.LabelSelectorAsSelector(ls)
}

func federatesWith(names []string, own spiffeid.TrustDomain) ([]spiffeid.TrustDomain, error) {
	var out []spiffeid.TrustDomain
	for _, n := range names {
		td, err := spiffeid.TrustDomainFromString(n)
		if err != nil {
			return nil, fmt.Errorf("federatesWith %q: %w", n, err)
		}
		if td == own {
			return nil, fmt.Errorf("federatesWith %q: that is this server's own trust domain", n)
		}
		out = append(out, td)
	}
	slices.SortFunc(out, func(a, b spiffeid.TrustDomain) int { return strings.Compare(a.Name(), b.Name()) })
	return slices.Compact(out), nil
}

func checkTTLs(x509, jwt time.Duration) error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"ttl", x509}, {"jwtTtl", jwt}} {
		if d.v < 0 || d.v > registration.MaxTTL {
			return fmt.Errorf("%s out of range 0..%s", d.name, registration.MaxTTL)
		}
	}
	return nil
}

// limitedBuffer fails writes past MaxTemplateOutput bytes.
type limitedBuffer struct{ bytes.Buffer }

var errTooLong = fmt.Errorf("output longer than %d bytes", MaxTemplateOutput)

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > MaxTemplateOutput {
		return 0, errTooLong
	}
	return b.Buffer.Write(p)
}

// execute renders t; its output is untrusted and checked by the caller.
func execute(t *template.Template, data *TemplateData) (string, error) {
	var b limitedBuffer
	if err := t.Execute(&b, data); err != nil {
		return "", fmt.Errorf("%s: %w", t.Name(), err)
	}
	return b.String(), nil
}

// RenderSPIFFEID renders a SPIFFE ID template and checks the result: a
// valid SPIFFE ID in td, with a path, outside the reserved /agent and
// /hallmark namespaces.
func RenderSPIFFEID(t *template.Template, data *TemplateData, td spiffeid.TrustDomain) (spiffeid.ID, error) {
	out, err := execute(t, data)
	if err != nil {
		return spiffeid.ID{}, err
	}
	return checkWorkloadID(out, td)
}

func checkWorkloadID(s string, td spiffeid.TrustDomain) (spiffeid.ID, error) {
	id, err := registration.ParseIDInDomain(s, td)
	if err != nil {
		return spiffeid.ID{}, err
	}
	if id.Path() == "" {
		return spiffeid.ID{}, fmt.Errorf("SPIFFE ID %q has no path", s)
	}
	if err := registration.CheckNotReserved(id); err != nil {
		return spiffeid.ID{}, err
	}
	return id, nil
}

// render makes the entry s gives the pod in data (ID left empty): its
// rendered SPIFFE ID, DNS names (then extraDNS, without duplicates) and
// workload selectors, plus k8s:ns, k8s:sa and k8s:pod-uid, under parent.
func (s *spec) render(data *TemplateData, parent spiffeid.ID, td spiffeid.TrustDomain, extraDNS []string) (registration.Entry, error) {
	id, err := RenderSPIFFEID(s.id, data, td)
	if err != nil {
		return registration.Entry{}, err
	}
	e := registration.Entry{
		SPIFFEID: id, ParentID: parent, Selectors: podSelectors(data),
		X509SVIDTTL: s.src.TTL.Duration, JWTSVIDTTL: s.src.JWTTTL.Duration,
		FederatesWith: s.federates, Hint: s.src.Hint,
	}
	for _, t := range s.sels {
		out, err := execute(t, data)
		if err != nil {
			return registration.Entry{}, err
		}
		sel, err := registration.ParseSelector(out)
		if err != nil {
			return registration.Entry{}, fmt.Errorf("%s: %w", t.Name(), err)
		}
		e.Selectors = append(e.Selectors, sel)
	}
	for _, t := range s.dns {
		out, err := execute(t, data)
		if err != nil {
			return registration.Entry{}, err
		}
		if err := registration.ValidateDNSName(out); err != nil {
			return registration.Entry{}, fmt.Errorf("%s: %w", t.Name(), err)
		}
		e.DNSNames = appendUnique(e.DNSNames, out)
	}
	for _, d := range extraDNS {
		e.DNSNames = appendUnique(e.DNSNames, d)
	}
	e.Selectors = normSelectors(e.Selectors)
	if err := e.Validate(td); err != nil {
		return registration.Entry{}, err
	}
	return e, nil
}

func appendUnique(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// podSelectors are the selectors the agent's k8s workload attestor
// produces for every container of the pod that identify it.
func podSelectors(d *TemplateData) []registration.Selector {
	return []registration.Selector{
		{Type: "k8s", Value: "ns:" + d.PodMeta.Namespace},
		{Type: "k8s", Value: "sa:" + d.PodSpec.ServiceAccountName},
		{Type: "k8s", Value: "pod-uid:" + string(d.PodMeta.UID)},
	}
}

// normSelectors sorts selectors and drops duplicates.
func normSelectors(ss []registration.Selector) []registration.Selector {
	ss = registration.SortSelectors(ss)
	return slices.Compact(ss)
}
