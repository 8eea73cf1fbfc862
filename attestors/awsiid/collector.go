package awsiid

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"

	"github.com/hallmarkid/hallmark/attestors"
)

// Collector is the agent half of the aws_iid attestor.
type Collector struct {
	log    *slog.Logger
	client *imds.Client
}

var _ attestors.NodeCollector = (*Collector)(nil)

// NewCollector returns a collector reading IMDS with IMDSv2 only (no
// fallback to token-less IMDSv1).
func NewCollector(cfg AgentConfig, log *slog.Logger) (*Collector, error) {
	if log == nil {
		log = slog.Default()
	}
	opts := imds.Options{
		Endpoint:          cfg.IMDSEndpoint,
		EnableFallback:    aws.FalseTernary,
		ClientEnableState: imds.ClientEnabled,
	}
	return &Collector{log: log, client: imds.New(opts)}, nil
}

// Type returns "aws_iid".
func (c *Collector) Type() string { return Type }

// Payload fetches the document, its /rsa2048 PKCS#7 and its /signature.
func (c *Collector) Payload(ctx context.Context, _ attestors.CollectRequest) ([]byte, error) {
	doc, err := c.get(ctx, "instance-identity/document")
	if err != nil {
		return nil, err
	}
	p7, err := c.get(ctx, "instance-identity/rsa2048")
	if err != nil {
		return nil, err
	}
	p := Payload{Document: doc, RSA2048: p7}
	if sig, err := c.get(ctx, "instance-identity/signature"); err != nil {
		c.log.Warn("aws_iid: no /signature, sending the PKCS#7 only", "err", err)
	} else {
		p.Signature = sig
	}
	return json.Marshal(p)
}

// Answer refuses: aws_iid has no challenge round.
func (c *Collector) Answer(context.Context, []byte) ([]byte, error) {
	return nil, errors.New("awsiid: aws_iid has no challenge")
}

func (c *Collector) get(ctx context.Context, path string) (string, error) {
	out, err := c.client.GetDynamicData(ctx, &imds.GetDynamicDataInput{Path: path})
	if err != nil {
		return "", fmt.Errorf("awsiid: imds %s: %w", path, err)
	}
	defer out.Content.Close()
	b, err := io.ReadAll(io.LimitReader(out.Content, MaxPayloadSize))
	if err != nil {
		return "", fmt.Errorf("awsiid: imds %s: %w", path, err)
	}
	return string(b), nil
}
