package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The agent binary must not link the Kubernetes API modules, the SSM
// client or the bundle publisher: the bundle publishers that use them are
// server-side (server/bundlepub), the agent's bootstrap bundle loader
// (agent/bootstrap) needs none of them.
func TestAgentDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		for _, bad := range []string{"k8s.io/", "sigs.k8s.io/", "github.com/aws/aws-sdk-go-v2/service/ssm",
			"github.com/hallmarkid/hallmark/server/bundlepub", "github.com/hallmarkid/hallmark/internal/kubeapi"} {
			if strings.HasPrefix(p, bad) {
				t.Errorf("hallmark-agent depends on %s", p)
			}
		}
	}
}
