package k8spsat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/hallmarkid/hallmark/attestors"
)

// DefaultAgentTokenPath is where the agent's DaemonSet is expected to
// project its token, with the audience the server requires: by default
// DefaultAudience of the trust domain, spiffe://<td>/hallmark/server.
const DefaultAgentTokenPath = "/var/run/secrets/tokens/hallmark-agent"

// AgentConfig is the agent's `node_attestor "k8s_psat" { ... }` block.
type AgentConfig struct {
	// Cluster is the name the server knows this cluster by.
	Cluster string `hcl:"cluster"`
	// TokenPath is the projected service-account token, read anew for
	// every attestation (the kubelet rotates it).
	TokenPath string `hcl:"token_path,optional"`
}

// Collector is the agent half.
type Collector struct {
	cluster   string
	tokenPath string
}

var _ attestors.NodeCollector = (*Collector)(nil)

// NewCollector validates c.
func NewCollector(c AgentConfig) (*Collector, error) {
	if err := validClusterName(c.Cluster); err != nil {
		return nil, err
	}
	p := c.TokenPath
	if p == "" {
		p = DefaultAgentTokenPath
	}
	return &Collector{cluster: c.Cluster, tokenPath: p}, nil
}

// Type returns "k8s_psat".
func (c *Collector) Type() string { return Type }

// Payload reads the token and wraps it with the cluster name.
func (c *Collector) Payload(context.Context, attestors.CollectRequest) ([]byte, error) {
	tok, err := os.ReadFile(c.tokenPath)
	if err != nil {
		return nil, fmt.Errorf("k8spsat: read token: %w", err)
	}
	tok = bytes.TrimSpace(tok)
	if len(tok) == 0 || len(tok) > MaxTokenSize {
		return nil, fmt.Errorf("k8spsat: token %s is empty or larger than %d bytes", c.tokenPath, MaxTokenSize)
	}
	return json.Marshal(Payload{Cluster: c.cluster, Token: string(tok)})
}

// Answer fails: the server sends no challenges for k8s_psat.
func (c *Collector) Answer(context.Context, []byte) ([]byte, error) {
	return nil, errors.New("k8spsat: unexpected challenge")
}
