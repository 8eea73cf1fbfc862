package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/hallmarkid/hallmark/agent/bootstrap"
	"github.com/hallmarkid/hallmark/agent/config"
	"github.com/hallmarkid/hallmark/attestors/awsiam"
	"github.com/hallmarkid/hallmark/attestors/awsiid"
	"github.com/hallmarkid/hallmark/attestors/awsnitro"
	"github.com/hallmarkid/hallmark/attestors/jointoken"
	"github.com/hallmarkid/hallmark/attestors/k8spsat"
	"github.com/hallmarkid/hallmark/attestors/tpm"
	"github.com/hallmarkid/hallmark/internal/hclconf"
	"github.com/hallmarkid/hallmark/sds"
)

// Validate checks the parts of cfg that config.Load leaves to the agent —
// the node_attestor block (decoded, not built: building opens the TPM or
// calls the cloud), each workload_attestor, sds, telemetry and the trust
// bundle file — without touching data_dir, the TPM or the network.
// `hallmark-agent validate` runs it.
func Validate(cfg *config.Config) error {
	b := cfg.NodeAttestor
	var err error
	switch b.Kind {
	case jointoken.Type:
		// No token is fine: a restarted agent runs on its saved SVID.
		err = hclconf.DecodeBlock(b, &struct{}{})
	case tpm.Type:
		err = hclconf.DecodeBlock(b, &tpm.AgentConfig{})
	case awsiid.Type:
		err = hclconf.DecodeBlock(b, &awsiid.AgentConfig{})
	case awsnitro.Type:
		err = hclconf.DecodeBlock(b, &awsnitro.AgentConfig{})
	case awsiam.Type:
		err = hclconf.DecodeBlock(b, &awsiam.AgentConfig{})
	case k8spsat.Type:
		err = hclconf.DecodeBlock(b, &k8spsat.AgentConfig{})
	default:
		err = fmt.Errorf("unknown node attestor kind %q", b.Kind)
	}
	if err != nil {
		return fmt.Errorf("agent: node_attestor %q (%s): %w", b.Kind, b.Pos(), err)
	}
	if _, err := newWorkloadAttestors(cfg, slog.New(slog.DiscardHandler)); err != nil {
		return err
	}
	if cfg.SDS != nil {
		var hc sds.HCLConfig
		if err := hclconf.DecodeBlock(*cfg.SDS, &hc); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		if err := hc.Validate(); err != nil {
			return fmt.Errorf("agent: sds block (%s): %w", cfg.SDS.Pos(), err)
		}
	}
	if b := cfg.Telemetry; b != nil {
		var a Agent
		if err := hclconf.DecodeBlock(*b, &a.tele); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		if err := a.tele.Validate(); err != nil {
			return fmt.Errorf("agent: telemetry (%s): %w", b.Pos(), err)
		}
	}
	switch {
	case cfg.TrustBundlePath != "":
		// In its trust_bundle_format, as the agent reads it.
		src := bootstrap.Source{TrustDomain: cfg.TrustDomain, Path: cfg.TrustBundlePath, Format: cfg.TrustBundleFormat}
		if _, err := src.Load(context.Background()); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
	case cfg.TrustBundleURL != "":
		// Downloaded before the first attestation; validate stays offline.
	case !cfg.InsecureBootstrap:
		return errors.New("agent: trust_bundle_path or trust_bundle_url is required unless insecure_bootstrap is set")
	}
	return nil
}
