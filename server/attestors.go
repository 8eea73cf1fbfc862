package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/hallmarkid/hallmark/attestors"
	"github.com/hallmarkid/hallmark/attestors/awsiam"
	"github.com/hallmarkid/hallmark/attestors/awsiid"
	"github.com/hallmarkid/hallmark/attestors/awsiid/ec2describe"
	"github.com/hallmarkid/hallmark/attestors/awsnitro"
	"github.com/hallmarkid/hallmark/attestors/jointoken"
	"github.com/hallmarkid/hallmark/attestors/k8spsat"
	"github.com/hallmarkid/hallmark/attestors/k8spsat/tokenreview"
	"github.com/hallmarkid/hallmark/attestors/tpm"
	"github.com/hallmarkid/hallmark/internal/hclconf"
)

// nodeVerifiers is the wiring of the node attestors' server halves: kind
// → constructor, in the order error messages list them. Adding an
// attestor is one line here (and one in the agent's table).
var nodeVerifiers = []struct {
	kind string
	new  func(s *Server, b hclconf.Block, log *slog.Logger) (attestors.NodeVerifier, error)
}{
	{jointoken.Type, decoded(func(s *Server, _ struct{}, _ *slog.Logger) (attestors.NodeVerifier, error) {
		return jointoken.NewVerifier(s.store, nil), nil
	})},
	{tpm.Type, decoded(func(_ *Server, cfg tpm.ServerConfig, log *slog.Logger) (attestors.NodeVerifier, error) {
		return tpm.NewVerifier(cfg, log)
	})},
	{awsiid.Type, decoded(newAWSIIDVerifier)},
	{awsnitro.Type, decoded(func(_ *Server, cfg awsnitro.ServerConfig, log *slog.Logger) (attestors.NodeVerifier, error) {
		return awsnitro.NewVerifier(cfg, log)
	})},
	{awsiam.Type, decoded(func(_ *Server, cfg awsiam.ServerConfig, log *slog.Logger) (attestors.NodeVerifier, error) {
		return awsiam.NewVerifier(cfg, log)
	})},
	{k8spsat.Type, decoded(func(_ *Server, cfg k8spsat.ServerConfig, log *slog.Logger) (attestors.NodeVerifier, error) {
		cfg.Log = log
		return k8spsat.NewVerifier(cfg, k8spsat.WithTokenReviewers(tokenreview.ForCluster))
	})},
}

// decoded adapts a constructor taking the attestor's own configuration
// type to one taking its HCL block, decoded strictly into that type.
func decoded[C any](build func(s *Server, cfg C, log *slog.Logger) (attestors.NodeVerifier, error)) func(*Server, hclconf.Block, *slog.Logger) (attestors.NodeVerifier, error) {
	return func(s *Server, b hclconf.Block, log *slog.Logger) (attestors.NodeVerifier, error) {
		var cfg C
		if err := hclconf.DecodeBlock(b, &cfg); err != nil {
			return nil, err
		}
		return build(s, cfg, log)
	}
}

func newAWSIIDVerifier(_ *Server, cfg awsiid.ServerConfig, log *slog.Logger) (attestors.NodeVerifier, error) {
	var opts []awsiid.Option
	if cfg.DescribeInstances {
		d, err := ec2describe.New(context.Background(), ec2describe.Config{Endpoint: cfg.EC2Endpoint})
		if err != nil {
			return nil, err
		}
		opts = append(opts, awsiid.WithInstanceDescriber(d))
	}
	return awsiid.NewVerifier(cfg, log, opts...)
}

// verifiers builds the configured node attestors; join_token alone when
// none is configured.
func (s *Server) verifiers() ([]attestors.NodeVerifier, error) {
	blocks := s.cfg.NodeAttestors
	if len(blocks) == 0 {
		blocks = []hclconf.Block{{Kind: jointoken.Type}}
	}
	var out []attestors.NodeVerifier
	for _, b := range blocks {
		v, err := s.verifier(b)
		if err != nil {
			return nil, fmt.Errorf("server: node_attestor %q (%s): %w", b.Kind, b.Pos(), err)
		}
		out = append(out, v)
	}
	return out, nil
}

// verifier builds one node attestor's server half from its HCL block.
func (s *Server) verifier(b hclconf.Block) (attestors.NodeVerifier, error) {
	log := s.log.With("subsystem", "node_attestor", "attestor", b.Kind)
	known := make([]string, len(nodeVerifiers))
	for i, v := range nodeVerifiers {
		if v.kind == b.Kind {
			return v.new(s, b, log)
		}
		known[i] = v.kind
	}
	return nil, errors.New("unknown node attestor kind (known: " + strings.Join(known, ", ") + ")")
}
