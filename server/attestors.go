package server

import (
	"context"
	"errors"
	"fmt"

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

// verifier builds one node attestor's server half from its HCL block,
// decoded strictly into the attestor's own configuration type.
func (s *Server) verifier(b hclconf.Block) (attestors.NodeVerifier, error) {
	log := s.log.With("subsystem", "node_attestor", "attestor", b.Kind)
	switch b.Kind {
	case jointoken.Type:
		if err := hclconf.DecodeBlock(b, &struct{}{}); err != nil {
			return nil, err
		}
		return jointoken.NewVerifier(s.store, nil), nil
	case tpm.Type:
		var cfg tpm.ServerConfig
		if err := hclconf.DecodeBlock(b, &cfg); err != nil {
			return nil, err
		}
		return tpm.NewVerifier(cfg, log)
	case awsiid.Type:
		var cfg awsiid.ServerConfig
		if err := hclconf.DecodeBlock(b, &cfg); err != nil {
			return nil, err
		}
		var opts []awsiid.Option
		if cfg.DescribeInstances {
			d, err := ec2describe.New(context.Background(), ec2describe.Config{Endpoint: cfg.EC2Endpoint})
			if err != nil {
				return nil, err
			}
			opts = append(opts, awsiid.WithInstanceDescriber(d))
		}
		return awsiid.NewVerifier(cfg, log, opts...)
	case awsnitro.Type:
		var cfg awsnitro.ServerConfig
		if err := hclconf.DecodeBlock(b, &cfg); err != nil {
			return nil, err
		}
		return awsnitro.NewVerifier(cfg, log)
	case awsiam.Type:
		var cfg awsiam.ServerConfig
		if err := hclconf.DecodeBlock(b, &cfg); err != nil {
			return nil, err
		}
		return awsiam.NewVerifier(cfg, log)
	case k8spsat.Type:
		var cfg k8spsat.ServerConfig
		if err := hclconf.DecodeBlock(b, &cfg); err != nil {
			return nil, err
		}
		cfg.Log = log
		return k8spsat.NewVerifier(cfg, k8spsat.WithTokenReviewers(tokenreview.ForCluster))
	default:
		return nil, errors.New("unknown node attestor kind (known: join_token, tpm, aws_iid, aws_nitro, aws_iam, k8s_psat)")
	}
}
