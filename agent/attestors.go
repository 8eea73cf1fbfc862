package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/hallmarkid/hallmark/agent/config"
	"github.com/hallmarkid/hallmark/attestors"
	"github.com/hallmarkid/hallmark/attestors/awsiam"
	"github.com/hallmarkid/hallmark/attestors/awsiid"
	"github.com/hallmarkid/hallmark/attestors/awsnitro"
	"github.com/hallmarkid/hallmark/attestors/jointoken"
	"github.com/hallmarkid/hallmark/attestors/k8s"
	"github.com/hallmarkid/hallmark/attestors/k8spsat"
	"github.com/hallmarkid/hallmark/attestors/tpm"
	"github.com/hallmarkid/hallmark/attestors/unix"
	"github.com/hallmarkid/hallmark/internal/hclconf"
)

// collectors is the wiring of the node attestors' agent halves: kind →
// constructor, in the order error messages list them. Adding an attestor
// is one line here (and one in the server's table).
var collectors = []struct {
	kind string
	new  func(cfg *config.Config, b hclconf.Block, log *slog.Logger) (attestors.NodeCollector, error)
}{
	{jointoken.Type, decoded(func(cfg *config.Config, _ struct{}, _ *slog.Logger) (attestors.NodeCollector, error) {
		// Without a token the agent runs on its saved SVID: loadOrAttest
		// refuses to attest (errNoJoinToken) when there is none.
		return jointoken.NewCollector(cfg.JoinToken), nil
	})},
	{tpm.Type, decoded(func(cfg *config.Config, c tpm.AgentConfig, log *slog.Logger) (attestors.NodeCollector, error) {
		return tpm.NewCollector(c, cfg.DataDir, log)
	})},
	{awsiid.Type, decoded(func(_ *config.Config, c awsiid.AgentConfig, log *slog.Logger) (attestors.NodeCollector, error) {
		return awsiid.NewCollector(c, log)
	})},
	{awsnitro.Type, decoded(func(_ *config.Config, c awsnitro.AgentConfig, log *slog.Logger) (attestors.NodeCollector, error) {
		return awsnitro.NewCollector(c, log)
	})},
	{awsiam.Type, decoded(func(cfg *config.Config, c awsiam.AgentConfig, log *slog.Logger) (attestors.NodeCollector, error) {
		c.TrustDomain = cfg.TrustDomain
		return awsiam.NewCollector(c, log)
	})},
	{k8spsat.Type, decoded(func(_ *config.Config, c k8spsat.AgentConfig, _ *slog.Logger) (attestors.NodeCollector, error) {
		return k8spsat.NewCollector(c)
	})},
}

// workloadAttestors is the wiring of the workload attestors: kind →
// constructor, in the order error messages list them.
var workloadAttestors = []struct {
	kind string
	new  func(cfg *config.Config, b hclconf.Block, log *slog.Logger) (attestors.WorkloadAttestor, error)
}{
	{unix.Name, decoded(func(_ *config.Config, uc unixConfig, log *slog.Logger) (attestors.WorkloadAttestor, error) {
		return unix.New(unix.Config{DiscoverWorkloadPath: uc.DiscoverWorkloadPath, WorkloadSizeLimit: uc.WorkloadSizeLimit, Log: log}), nil
	})},
	{k8s.SelectorType, decoded(func(_ *config.Config, c k8s.Config, log *slog.Logger) (attestors.WorkloadAttestor, error) {
		c.Log = log
		return k8s.New(c)
	})},
}

// decoded adapts a constructor taking the attestor's own configuration
// type to one taking its HCL block, decoded strictly into that type.
func decoded[C, A any](build func(cfg *config.Config, c C, log *slog.Logger) (A, error)) func(*config.Config, hclconf.Block, *slog.Logger) (A, error) {
	return func(cfg *config.Config, b hclconf.Block, log *slog.Logger) (A, error) {
		var c C
		if err := hclconf.DecodeBlock(b, &c); err != nil {
			var none A
			return none, err
		}
		return build(cfg, c, log)
	}
}

// newCollector builds the configured node attestor's agent half from its
// HCL block.
func newCollector(cfg *config.Config, log *slog.Logger) (attestors.NodeCollector, error) {
	b := cfg.NodeAttestor
	log = log.With("subsystem", "node_attestor", "attestor", b.Kind)
	if b.Kind == "" {
		return nil, errors.New("no node attestor configured (set join_token or add a node_attestor block)")
	}
	known := make([]string, len(collectors))
	for i, c := range collectors {
		if c.kind == b.Kind {
			return c.new(cfg, b, log)
		}
		known[i] = c.kind
	}
	return nil, errors.New("unknown node attestor kind (known: " + strings.Join(known, ", ") + ")")
}

// unixConfig is the HCL body of workload_attestor "unix".
type unixConfig struct {
	DiscoverWorkloadPath bool  `hcl:"discover_workload_path,optional"`
	WorkloadSizeLimit    int64 `hcl:"workload_size_limit,optional"`
}

// newWorkloadAttestors builds the configured workload attestors; unix when
// none is configured.
func newWorkloadAttestors(cfg *config.Config, log *slog.Logger) ([]attestors.WorkloadAttestor, error) {
	blocks := cfg.WorkloadAttestors
	if len(blocks) == 0 {
		blocks = []hclconf.Block{{Kind: unix.Name}}
	}
	var out []attestors.WorkloadAttestor
	for _, b := range blocks {
		w, err := newWorkloadAttestor(cfg, b, log.With("subsystem", "workload_attestor", "attestor", b.Kind))
		if err != nil {
			return nil, fmt.Errorf("agent: workload_attestor %q (%s): %w", b.Kind, b.Pos(), err)
		}
		out = append(out, w)
	}
	return out, nil
}

func newWorkloadAttestor(cfg *config.Config, b hclconf.Block, log *slog.Logger) (attestors.WorkloadAttestor, error) {
	known := make([]string, len(workloadAttestors))
	for i, w := range workloadAttestors {
		if w.kind == b.Kind {
			return w.new(cfg, b, log)
		}
		known[i] = w.kind
	}
	return nil, errors.New("unknown kind (known: " + strings.Join(known, ", ") + ")")
}
