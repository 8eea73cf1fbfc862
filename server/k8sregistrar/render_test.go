package k8sregistrar

import (
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hallmarkid/hallmark/registration"
)

var testTD = spiffeid.RequireTrustDomainFromString("example.org")

func testData() *TemplateData {
	return &TemplateData{
		TrustDomain: testTD.Name(), ClusterName: "prod", ClusterDomain: "cluster.local",
		PodMeta:  &metav1.ObjectMeta{Name: "web-1", Namespace: "shop", UID: "uid-1", Labels: map[string]string{"app": "web"}},
		PodSpec:  &corev1.PodSpec{ServiceAccountName: "web", NodeName: "n1"},
		NodeMeta: &metav1.ObjectMeta{Name: "n1", UID: "node-uid", Labels: map[string]string{"zone": "a"}},
		NodeSpec: &corev1.NodeSpec{ProviderID: "aws:///eu-west-1a/i-123"},
	}
}

func TestRender(t *testing.T) {
	parent, _ := AgentID(testTD, "prod", "node-uid")
	for _, tc := range []struct {
		name    string
		spec    ClusterSPIFFEIDSpec
		wantID  string
		wantErr string
	}{
		{name: "istio", spec: ClusterSPIFFEIDSpec{SPIFFEIDTemplate: DefaultSPIFFEIDTemplate}, wantID: "spiffe://example.org/ns/shop/sa/web"},
		{name: "node and cluster", spec: ClusterSPIFFEIDSpec{SPIFFEIDTemplate: "spiffe://{{ .TrustDomain }}/{{ .ClusterName }}/{{ .NodeMeta.Name }}/{{ index .PodMeta.Labels \"app\" }}"},
			wantID: "spiffe://example.org/prod/n1/web"},
		{name: "if and with", spec: ClusterSPIFFEIDSpec{SPIFFEIDTemplate: "spiffe://{{ .TrustDomain }}/{{ with .PodMeta.Labels.app }}{{ . }}{{ else }}none{{ end }}"},
			wantID: "spiffe://example.org/web"},
		{name: "other trust domain", spec: ClusterSPIFFEIDSpec{SPIFFEIDTemplate: "spiffe://evil.org/x"}, wantErr: "not in trust domain"},
		{name: "agent namespace", spec: ClusterSPIFFEIDSpec{SPIFFEIDTemplate: "spiffe://{{ .TrustDomain }}/agent/k8s_psat/prod/node-uid"}, wantErr: "reserved"},
		{name: "server namespace", spec: ClusterSPIFFEIDSpec{SPIFFEIDTemplate: "spiffe://{{ .TrustDomain }}/hallmark"}, wantErr: "reserved"},
		{name: "no path", spec: ClusterSPIFFEIDSpec{SPIFFEIDTemplate: "spiffe://{{ .TrustDomain }}"}, wantErr: "no path"},
		{name: "dot segment", spec: ClusterSPIFFEIDSpec{SPIFFEIDTemplate: "spiffe://{{ .TrustDomain }}/ns/../agent/x"}, wantErr: "SPIFFE ID"},
		{name: "empty label", spec: ClusterSPIFFEIDSpec{SPIFFEIDTemplate: "spiffe://{{ .TrustDomain }}/{{ index .PodMeta.Labels \"nope\" }}"}, wantErr: "trailing slash"},
		{name: "missing field", spec: ClusterSPIFFEIDSpec{SPIFFEIDTemplate: "spiffe://{{ .TrustDomain }}/{{ .Nope }}"}, wantErr: "can't evaluate"},
		{name: "too long", spec: ClusterSPIFFEIDSpec{SPIFFEIDTemplate: "spiffe://{{ .TrustDomain }}/{{ printf \"%05000d\" 1 }}"}, wantErr: "longer than"},
		{name: "range", spec: ClusterSPIFFEIDSpec{SPIFFEIDTemplate: "spiffe://{{ .TrustDomain }}/{{ range .PodSpec.Containers }}x{{ end }}"}, wantErr: "range is not allowed"},
		{name: "recursion", spec: ClusterSPIFFEIDSpec{SPIFFEIDTemplate: "{{ define \"x\" }}{{ template \"x\" }}{{ end }}{{ template \"x\" }}"}, wantErr: "not allowed"},
		{name: "bad selector", spec: ClusterSPIFFEIDSpec{SPIFFEIDTemplate: DefaultSPIFFEIDTemplate, WorkloadSelectorTemplates: []string{"k8s"}}, wantErr: "type:value"},
		{name: "bad DNS name", spec: ClusterSPIFFEIDSpec{SPIFFEIDTemplate: DefaultSPIFFEIDTemplate, DNSNameTemplates: []string{"{{ .PodMeta.Name }}_x"}}, wantErr: "DNS name"},
		{name: "own trust domain federation", spec: ClusterSPIFFEIDSpec{SPIFFEIDTemplate: DefaultSPIFFEIDTemplate, FederatesWith: []string{"example.org"}}, wantErr: "own trust domain"},
		{name: "negative ttl", spec: ClusterSPIFFEIDSpec{SPIFFEIDTemplate: DefaultSPIFFEIDTemplate, TTL: metav1.Duration{Duration: -time.Second}}, wantErr: "ttl out of range"},
		{name: "admin", spec: ClusterSPIFFEIDSpec{SPIFFEIDTemplate: DefaultSPIFFEIDTemplate, Admin: true}, wantErr: "admin is not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := compile(&ClusterSPIFFEID{Spec: tc.spec}, testTD)
			err := s.err
			var e registration.Entry
			if err == nil {
				e, err = s.render(testData(), parent, testTD, nil)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if e.SPIFFEID.String() != tc.wantID || e.ParentID != parent {
				t.Fatalf("entry = %v under %v", e.SPIFFEID, e.ParentID)
			}
		})
	}
}

func TestEntryIDs(t *testing.T) {
	a, b := PodEntryID("prod", "csid", "uid"), PodEntryID("prod", "csid", "uid")
	if a != b || !strings.HasPrefix(a, OwnedPrefix("prod")) || !IsReservedEntryID(a) {
		t.Fatalf("pod entry ID %q not deterministic or not under the prefix", a)
	}
	// Field boundaries are part of the digest.
	if PodEntryID("prod", "ab", "c") == PodEntryID("prod", "a", "bc") || StaticEntryID("prod", "x") == PodEntryID("prod", "x", "") {
		t.Fatal("entry IDs collide")
	}
	if strings.HasPrefix(PodEntryID("prod2", "c", "u"), OwnedPrefix("prod")) {
		t.Fatal("another cluster's IDs fall under this cluster's prefix")
	}
	if len(a) > 255 {
		t.Fatalf("ID %d bytes long", len(a))
	}
	id, err := AgentID(testTD, "prod", "4f1c")
	if err != nil || id.String() != "spiffe://example.org/agent/k8s_psat/prod/4f1c" {
		t.Fatalf("agent ID = %v, %v", id, err)
	}
}

// FuzzRender: whatever the template and the pod's fields, rendering
// neither panics nor yields an entry outside the trust domain, in a
// reserved namespace, or that fails the admin API's validation.
func FuzzRender(f *testing.F) {
	for _, seed := range []struct{ id, sel, dns, ns, sa, label string }{
		{DefaultSPIFFEIDTemplate, "", "", "default", "sa", "x"},
		{"spiffe://{{ .TrustDomain }}/{{ index .PodMeta.Labels \"app\" }}", "k8s:pod-label:app:{{ index .PodMeta.Labels \"app\" }}", "{{ .PodMeta.Name }}.svc", "ns", "sa", "../agent"},
		{"spiffe://{{ .TrustDomain }}/agent/{{ .PodSpec.ServiceAccountName }}", "", "", "ns", "x", ""},
		{"spiffe://{{ .TrustDomain }}/{{ .PodMeta.Namespace }}", "{{ .PodMeta.Namespace }}", "*.{{ .ClusterDomain }}", "a/../../hallmark", "s", "v"},
		{"{{ printf \"spiffe://%s/%s\" .TrustDomain .PodSpec.ServiceAccountName }}", "unix:uid:{{ len .PodMeta.Labels }}", "", "ns", "%2e%2e", "v"},
		{"spiffe://example.org/ns/{{ .PodMeta.Namespace }}?q", "", "", "x", "y", "z"},
		{"{{ with .PodMeta.Labels.app }}spiffe://example.org/{{ . }}{{ end }}", "", "", "n", "s", "a\x00b"},
	} {
		f.Add(seed.id, seed.sel, seed.dns, seed.ns, seed.sa, seed.label)
	}
	parent, _ := AgentID(testTD, "prod", "node-uid")
	f.Fuzz(func(t *testing.T, idT, selT, dnsT, ns, sa, label string) {
		spec := ClusterSPIFFEIDSpec{SPIFFEIDTemplate: idT}
		if selT != "" {
			spec.WorkloadSelectorTemplates = []string{selT}
		}
		if dnsT != "" {
			spec.DNSNameTemplates = []string{dnsT}
		}
		s := compile(&ClusterSPIFFEID{Spec: spec}, testTD)
		if s.err != nil {
			return
		}
		d := testData()
		d.PodMeta.Namespace, d.PodSpec.ServiceAccountName, d.PodMeta.Labels["app"] = ns, sa, label
		e, err := s.render(d, parent, testTD, []string{"web.shop.svc"})
		if err != nil {
			return
		}
		if e.SPIFFEID.TrustDomain() != testTD || registration.CheckNotReserved(e.SPIFFEID) != nil || e.SPIFFEID.Path() == "" {
			t.Fatalf("rendered %q", e.SPIFFEID)
		}
		if err := e.Validate(testTD); err != nil {
			t.Fatalf("rendered an invalid entry: %v", err)
		}
		if len(e.SPIFFEID.String()) > registration.MaxIDLen {
			t.Fatalf("rendered %d bytes", len(e.SPIFFEID.String()))
		}
	})
}
