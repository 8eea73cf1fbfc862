package bundlepub_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hallmarkid/hallmark/internal/hclconf"
	"github.com/hallmarkid/hallmark/internal/kubetest"
	"github.com/hallmarkid/hallmark/server/bundlepub"
)

func TestMain(m *testing.M) {
	code := m.Run()
	kubetest.Stop()
	os.Exit(code)
}

const cmPath = "/api/v1/namespaces/hallmark/configmaps/hallmark-bundle"

// kubeTarget returns a k8s_configmap target calling the real API server as
// the hallmark-server service account under the shipped RBAC.
func kubeTarget(t *testing.T, c *kubetest.Cluster, extra string) bundlepub.Target {
	t.Helper()
	kc := c.Kubeconfig(t, t.TempDir(), "system:serviceaccount:hallmark:hallmark-server")
	outs, err := bundlepub.Outputs(context.Background(), []hclconf.Block{block(t, "k8s_configmap",
		"kube_config_file_path = \""+kc+"\"\n"+extra)})
	if err != nil {
		t.Fatal(err)
	}
	return outs[0].Target
}

func configMap(t *testing.T, c *kubetest.Cluster) (data map[string]string, rv string, code int) {
	t.Helper()
	code, body, err := c.Do(context.Background(), http.MethodGet, cmPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
		Data map[string]string `json:"data"`
	}
	_ = json.Unmarshal(body, &cm)
	return cm.Data, cm.Metadata.ResourceVersion, code
}

func applyBase(t *testing.T, c *kubetest.Cluster, files ...string) {
	t.Helper()
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "kubernetes", "base", f))
		if err != nil {
			t.Fatal(err)
		}
		c.Apply(t, b)
	}
}

// TestConfigMap runs against a real kube-apiserver: the publisher writes
// only the bundle key (other keys survive), rewrites nothing unchanged,
// repairs an edited value, and several publishers racing (HA servers)
// converge without error and without extra writes.
func TestConfigMap(t *testing.T) {
	c := kubetest.Start(t)
	ctx := context.Background()
	applyBase(t, c, "namespace.yaml", "server-rbac.yaml")

	// The shipped Role cannot create the ConfigMap: a clear error.
	if _, _, code := configMap(t, c); code == http.StatusNotFound {
		_, err := kubeTarget(t, c, "").Publish(ctx, []byte("x"))
		if err == nil || !strings.Contains(err.Error(), "create: 403") {
			t.Fatalf("create without permission: err = %v", err)
		}
	}
	applyBase(t, c, "bundle-configmap.yaml")
	// Another key an operator keeps there.
	notes := map[string]any{"data": map[string]string{"notes": "kept"}}
	if code, body, err := c.Do(ctx, http.MethodPatch, cmPath, notes); err != nil || code != http.StatusOK {
		t.Fatalf("%d %s %v", code, body, err)
	}
	tg := kubeTarget(t, c, "")
	for i, step := range []struct {
		content   string
		wantWrote bool
	}{{"one", true}, {"one", false}, {"two", true}, {"two", false}} {
		wrote, err := tg.Publish(ctx, []byte(step.content))
		if err != nil || wrote != step.wantWrote {
			t.Fatalf("step %d: wrote %v, %v; want %v", i, wrote, err, step.wantWrote)
		}
		if data, _, _ := configMap(t, c); data["bundle.pem"] != step.content {
			t.Fatalf("step %d: ConfigMap holds %q", i, data)
		}
	}

	// Another ConfigMap is out of reach of the Role.
	_, err := kubeTarget(t, c, `config_map = "other"`).Publish(ctx, []byte("x"))
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("other ConfigMap: err = %v", err)
	}

	// Racing publishers of the same bundle: each sees either its own write
	// or the other's; exactly one writes.
	_, rv0, _ := configMap(t, c)
	var wrote atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		p := kubeTarget(t, c, "")
		wg.Go(func() {
			w, err := p.Publish(ctx, []byte("three"))
			if err != nil {
				t.Error(err)
			}
			if w {
				wrote.Add(1)
			}
		})
	}
	wg.Wait()
	data, rv1, _ := configMap(t, c)
	if data["bundle.pem"] != "three" || data["notes"] != "kept" || rv1 == rv0 {
		t.Fatalf("after the race: %q (resourceVersion %s -> %s)", data, rv0, rv1)
	}
	if n := wrote.Load(); n < 1 || n > 4 {
		t.Fatalf("%d publishers wrote", n)
	}
	t.Logf("%d of 4 racing publishers wrote", wrote.Load())
}
