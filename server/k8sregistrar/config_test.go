package k8sregistrar

import (
	"strings"
	"testing"
)

func TestHCLConfigValidate(t *testing.T) {
	f := false
	for _, tc := range []struct {
		name    string
		h       HCLConfig
		wantErr string
	}{
		{name: "in cluster", h: HCLConfig{Cluster: "prod", InCluster: true}},
		{name: "kubeconfig", h: HCLConfig{Cluster: "eks-prod.eu_1", KubeConfigFile: "/k", WatchClassless: &f, ClusterDomain: "corp.local"}},
		{name: "no cluster", h: HCLConfig{InCluster: true}, wantErr: "cluster"},
		{name: "cluster with slash", h: HCLConfig{Cluster: "a/b", InCluster: true}, wantErr: "cluster"},
		{name: "cluster too long", h: HCLConfig{Cluster: strings.Repeat("a", 64), InCluster: true}, wantErr: "cluster"},
		{name: "neither connection", h: HCLConfig{Cluster: "prod"}, wantErr: "exactly one of"},
		{name: "both connections", h: HCLConfig{Cluster: "prod", InCluster: true, KubeConfigFile: "/k"}, wantErr: "exactly one of"},
		{name: "bad cluster domain", h: HCLConfig{Cluster: "prod", InCluster: true, ClusterDomain: "bad_domain"}, wantErr: "cluster_domain"},
		{name: "empty ignored namespace", h: HCLConfig{Cluster: "prod", InCluster: true, IgnoreNamespaces: []string{""}}, wantErr: "ignore_namespaces"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.h.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "k8sregistrar: ") {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
