package server

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/hallmarkid/hallmark/internal/hclconf"
	"github.com/hallmarkid/hallmark/internal/telemetry"
	"github.com/hallmarkid/hallmark/server/audit"
	"github.com/hallmarkid/hallmark/server/bundlepub"
	"github.com/hallmarkid/hallmark/server/ca"
	"github.com/hallmarkid/hallmark/server/config"
	"github.com/hallmarkid/hallmark/server/federation"
	"github.com/hallmarkid/hallmark/server/k8sregistrar"
)

// Validate checks the parts of cfg that config.Load leaves to the server —
// each node_attestor block (building its verifier, which reads the files
// it names), upstream_authority, audit, telemetry, federation and bundle_publisher — without
// opening the datastore or writing to data_dir. New runs it first, so a
// bad block stops the server before it touches anything;
// `hallmark-server validate` runs it alone.
func Validate(cfg *config.Config, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log} // no store: verifiers only keep it
	if _, err := s.verifiers(); err != nil {
		return err
	}
	if b := cfg.UpstreamAuthority; b != nil {
		if _, err := ca.DecodeUpstreamHCL(*b); err != nil {
			return fmt.Errorf("server: %w", err)
		}
	}
	if b := cfg.Audit; b != nil {
		var ac audit.HCLConfig
		if err := hclconf.DecodeBlock(*b, &ac); err != nil {
			return fmt.Errorf("server: %w", err)
		}
		if _, err := ac.Config(); err != nil {
			return fmt.Errorf("server: audit (%s): %w", b.Pos(), err)
		}
	}
	if b := cfg.Telemetry; b != nil {
		var tc telemetry.HCLConfig
		if err := hclconf.DecodeBlock(*b, &tc); err != nil {
			return fmt.Errorf("server: %w", err)
		}
		if err := tc.Validate(); err != nil {
			return fmt.Errorf("server: telemetry (%s): %w", b.Pos(), err)
		}
	}
	if b := cfg.Federation; b != nil {
		if _, diags := federation.ParseHCL(b.Body, cfg.TrustDomain); diags.HasErrors() {
			return hclconf.DiagError("config", diags)
		}
	}
	if _, err := bundlepub.Outputs(context.Background(), cfg.BundlePublishers); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	if b := cfg.K8sRegistrar; b != nil {
		var h k8sregistrar.HCLConfig
		if err := hclconf.DecodeBlock(*b, &h); err != nil {
			return fmt.Errorf("server: %w", err)
		}
		if err := h.Validate(); err != nil {
			return fmt.Errorf("server: k8s_registrar (%s): %w", b.Pos(), err)
		}
	}
	return nil
}
