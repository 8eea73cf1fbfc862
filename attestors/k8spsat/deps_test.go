package k8spsat_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The agent links this package for its collector: it must not pull in the
// Kubernetes API types (package tokenreview holds them, for the server).
func TestNoKubernetesModules(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "k8s.io/") || strings.HasPrefix(p, "sigs.k8s.io/") ||
			strings.HasPrefix(p, "github.com/hallmarkid/hallmark/attestors/k8spsat/") {
			t.Errorf("k8spsat depends on %s", p)
		}
	}
}
