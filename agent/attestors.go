package agent

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/hallmarkid/hallmark/agent/config"
	"github.com/hallmarkid/hallmark/attestors"
	"github.com/hallmarkid/hallmark/attestors/jointoken"
	"github.com/hallmarkid/hallmark/attestors/unix"
	"github.com/hallmarkid/hallmark/internal/hclconf"
)

// newCollector builds the configured node attestor's agent half.
func newCollector(cfg *config.Config) (attestors.NodeCollector, error) {
	b := cfg.NodeAttestor
	switch b.Kind {
	case jointoken.Type:
		if b.Body != nil {
			if err := hclconf.DecodeBlock(b, &struct{}{}); err != nil {
				return nil, err
			}
		}
		if cfg.JoinToken == "" {
			return nil, errors.New("join_token attestation needs join_token in the agent block or -joinToken")
		}
		return jointoken.NewCollector(cfg.JoinToken), nil
	case "":
		return nil, errors.New("no node attestor configured (set join_token or add a node_attestor block)")
	default:
		return nil, errors.New("unknown node attestor kind")
	}
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
		blocks = []hclconf.Block{{Kind: "unix"}}
	}
	var out []attestors.WorkloadAttestor
	for _, b := range blocks {
		switch b.Kind {
		case "unix":
			var uc unixConfig
			if b.Body != nil {
				if err := hclconf.DecodeBlock(b, &uc); err != nil {
					return nil, err
				}
			}
			out = append(out, unix.New(unix.Config{
				DiscoverWorkloadPath: uc.DiscoverWorkloadPath, WorkloadSizeLimit: uc.WorkloadSizeLimit,
				Log: log.With("subsystem", "workload_attestor", "attestor", "unix"),
			}))
		default:
			return nil, fmt.Errorf("agent: workload_attestor %q (%s): unknown kind", b.Kind, b.Pos())
		}
	}
	return out, nil
}
