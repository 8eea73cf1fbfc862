package agent

import (
	"log/slog"
	"testing"

	"github.com/hallmarkid/hallmark/agent/config"
	"github.com/hallmarkid/hallmark/internal/hclconf"
)

// TestAttestorTables: kinds are unique in each table, the tables build
// what they name, and unknown or missing kinds are refused with the same
// messages as before the tables.
func TestAttestorTables(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	seen := map[string]bool{}
	for _, c := range collectors {
		if seen["n/"+c.kind] {
			t.Errorf("node attestor kind %q twice", c.kind)
		}
		seen["n/"+c.kind] = true
	}
	for _, w := range workloadAttestors {
		if seen["w/"+w.kind] {
			t.Errorf("workload attestor kind %q twice", w.kind)
		}
		seen["w/"+w.kind] = true
	}
	if _, err := newCollector(&config.Config{NodeAttestor: hclconf.Block{Kind: "join_token"}, JoinToken: "t"}, log); err != nil {
		t.Errorf("join_token: %v", err)
	}
	if ws, err := newWorkloadAttestors(&config.Config{}, log); err != nil || len(ws) != 1 {
		t.Errorf("default workload attestors: %d (err %v), want unix", len(ws), err)
	}
	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"no node attestor", func() error { _, err := newCollector(&config.Config{}, log); return err },
			"no node attestor configured (set join_token or add a node_attestor block)"},
		{"unknown node attestor", func() error {
			_, err := newCollector(&config.Config{NodeAttestor: hclconf.Block{Kind: "sshpop"}}, log)
			return err
		}, "unknown node attestor kind (known: join_token, tpm, aws_iid, aws_nitro, aws_iam, k8s_psat)"},
		{"unknown workload attestor", func() error {
			_, err := newWorkloadAttestor(&config.Config{}, hclconf.Block{Kind: "docker"}, log)
			return err
		}, "unknown kind (known: unix, k8s)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); err == nil || err.Error() != tt.want {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}
