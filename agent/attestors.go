package agent

import (
	"errors"
	"fmt"
	"log/slog"

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

// newCollector builds the configured node attestor's agent half from its
// HCL block, decoded strictly into the attestor's own configuration type.
func newCollector(cfg *config.Config, log *slog.Logger) (attestors.NodeCollector, error) {
	b := cfg.NodeAttestor
	log = log.With("subsystem", "node_attestor", "attestor", b.Kind)
	switch b.Kind {
	case jointoken.Type:
		if err := hclconf.DecodeBlock(b, &struct{}{}); err != nil {
			return nil, err
		}
		// Without a token the agent runs on its saved SVID: loadOrAttest
		// refuses to attest (errNoJoinToken) when there is none.
		return jointoken.NewCollector(cfg.JoinToken), nil
	case tpm.Type:
		var c tpm.AgentConfig
		if err := hclconf.DecodeBlock(b, &c); err != nil {
			return nil, err
		}
		return tpm.NewCollector(c, cfg.DataDir, log)
	case awsiid.Type:
		var c awsiid.AgentConfig
		if err := hclconf.DecodeBlock(b, &c); err != nil {
			return nil, err
		}
		return awsiid.NewCollector(c, log)
	case awsnitro.Type:
		var c awsnitro.AgentConfig
		if err := hclconf.DecodeBlock(b, &c); err != nil {
			return nil, err
		}
		return awsnitro.NewCollector(c, log)
	case awsiam.Type:
		var c awsiam.AgentConfig
		if err := hclconf.DecodeBlock(b, &c); err != nil {
			return nil, err
		}
		c.TrustDomain = cfg.TrustDomain
		return awsiam.NewCollector(c, log)
	case k8spsat.Type:
		var c k8spsat.AgentConfig
		if err := hclconf.DecodeBlock(b, &c); err != nil {
			return nil, err
		}
		return k8spsat.NewCollector(c)
	case "":
		return nil, errors.New("no node attestor configured (set join_token or add a node_attestor block)")
	default:
		return nil, errors.New("unknown node attestor kind (known: join_token, tpm, aws_iid, aws_nitro, aws_iam, k8s_psat)")
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
		blocks = []hclconf.Block{{Kind: unix.Name}}
	}
	var out []attestors.WorkloadAttestor
	for _, b := range blocks {
		w, err := newWorkloadAttestor(b, log.With("subsystem", "workload_attestor", "attestor", b.Kind))
		if err != nil {
			return nil, fmt.Errorf("agent: workload_attestor %q (%s): %w", b.Kind, b.Pos(), err)
		}
		out = append(out, w)
	}
	return out, nil
}

func newWorkloadAttestor(b hclconf.Block, log *slog.Logger) (attestors.WorkloadAttestor, error) {
	switch b.Kind {
	case unix.Name:
		var uc unixConfig
		if err := hclconf.DecodeBlock(b, &uc); err != nil {
			return nil, err
		}
		return unix.New(unix.Config{DiscoverWorkloadPath: uc.DiscoverWorkloadPath, WorkloadSizeLimit: uc.WorkloadSizeLimit, Log: log}), nil
	case k8s.SelectorType:
		var c k8s.Config
		if err := hclconf.DecodeBlock(b, &c); err != nil {
			return nil, err
		}
		c.Log = log
		return k8s.New(c)
	default:
		return nil, errors.New("unknown kind (known: unix, k8s)")
	}
}
