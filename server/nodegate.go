package server

import (
	"fmt"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/server/admission"
	"github.com/hallmarkid/hallmark/server/config"
)

// nodeGate builds the admission gate of the Node API from the server
// block's limits.
func (s *Server) nodeGate() (*admission.Gate, error) {
	g, err := admission.New(admission.Config{
		Limits:        gateLimits(s.cfg.NodeAPI),
		TLS:           s.tlsConfig(),
		Authenticated: admission.AgentIn(s.cfg.TrustDomain),
		AttestMethod:  apiv1.Node_Attest_FullMethodName,
		Log:           s.log.With("subsystem", "node_api"),
		Refused:       s.metrics.NodeAPIRefused,
	})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	return g, nil
}

func gateLimits(l config.NodeAPILimits) admission.Limits {
	return admission.Limits{
		MaxInflightAttestations:   l.MaxInflightAttestations,
		AttestationRatePerSource:  l.RatePerSource,
		AttestationBurstPerSource: l.BurstPerSource,
		MaxConns:                  l.MaxConns,
		MaxConnsPerSource:         l.MaxConnsPerSource,
		MaxMessageSize:            l.MaxMessageSize,
		FirstMessageTimeout:       l.FirstMessageTimeout,
		AttestationTimeout:        l.AttestationTimeout,
	}
}
