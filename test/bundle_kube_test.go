package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/hallmarkid/hallmark/internal/kubetest"
	"github.com/hallmarkid/hallmark/test/testenv"
)

// kubePublisher is a bundle_publisher "k8s_configmap" block against the
// real API server, and a reader of the ConfigMap's value.
type kubePublisher struct {
	hcl  string
	read func() string
}

// configMapPublisherHCL starts (once per test binary) the real
// kube-apiserver, applies the shipped namespace, RBAC and empty
// hallmark-bundle ConfigMap, and returns a publisher block that calls the
// API server as the hallmark-server service account, so that only what
// deploy/kubernetes grants it is allowed.
func configMapPublisherHCL(t *testing.T) kubePublisher {
	t.Helper()
	c := kubetest.Start(t)
	base := filepath.Join(testenv.RepoRoot(), "deploy", "kubernetes", "base")
	for _, f := range []string{"namespace.yaml", "server-rbac.yaml", "bundle-configmap.yaml"} {
		b, err := os.ReadFile(filepath.Join(base, f))
		if err != nil {
			t.Fatal(err)
		}
		c.Apply(t, b)
	}
	kc := c.Kubeconfig(t, t.TempDir(), "system:serviceaccount:hallmark:hallmark-server")
	read := func() string {
		code, body, err := c.Do(context.Background(), http.MethodGet, "/api/v1/namespaces/hallmark/configmaps/hallmark-bundle", nil)
		if err != nil || code != http.StatusOK {
			return ""
		}
		var cm struct {
			Data map[string]string `json:"data"`
		}
		if json.Unmarshal(body, &cm) != nil {
			return ""
		}
		return cm.Data["bundle.pem"]
	}
	return kubePublisher{hcl: fmt.Sprintf(`bundle_publisher "k8s_configmap" {
  namespace             = "hallmark"
  config_map            = "hallmark-bundle"
  config_map_key        = "bundle.pem"
  kube_config_file_path = %q
}
`, kc), read: read}
}
