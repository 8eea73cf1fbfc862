package awsiam

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/hallmarkid/hallmark/attestors"
)

// CollectorOption configures a Collector.
type CollectorOption interface{ applyCollector(*Collector) }

type collectorOptionFunc func(*Collector)

func (f collectorOptionFunc) applyCollector(c *Collector) { f(c) }

// WithCredentials sets the credentials to sign with instead of the default
// AWS credential chain (which, on Fargate, reads the task role).
func WithCredentials(p aws.CredentialsProvider) CollectorOption {
	return collectorOptionFunc(func(c *Collector) { c.creds = p })
}

// WithCollectorClock sets the signing clock (default time.Now).
func WithCollectorClock(now func() time.Time) CollectorOption {
	return collectorOptionFunc(func(c *Collector) { c.now = now })
}

// Collector is the agent half of the aws_iam attestor.
type Collector struct {
	log    *slog.Logger
	cfg    AgentConfig
	region string
	host   string
	server string // the server name signed with every challenge
	now    func() time.Time

	// mu guards creds, loaded on first use.
	mu    sync.Mutex
	creds aws.CredentialsProvider
}

var _ attestors.NodeCollector = (*Collector)(nil)

// NewCollector returns a collector signing for cfg's STS region and host.
func NewCollector(cfg AgentConfig, log *slog.Logger, opts ...CollectorOption) (*Collector, error) {
	if log == nil {
		log = slog.Default()
	}
	c := &Collector{log: log, cfg: cfg, region: cfg.Region, host: cfg.STSHost, now: time.Now}
	if c.region == "" {
		c.region = os.Getenv("AWS_REGION")
	}
	if c.region == "" {
		c.region = "us-east-1"
	}
	if c.host == "" {
		c.host = "sts." + c.region + ".amazonaws.com"
	}
	if r, err := hostRegion(c.host); err != nil || r != c.region {
		return nil, fmt.Errorf("awsiam: config: sts_host %q does not serve region %q", c.host, c.region)
	}
	var err error
	if c.server, err = serverName(cfg.ServerID, cfg.TrustDomain); err != nil {
		return nil, fmt.Errorf("awsiam: config: %w", err)
	}
	for _, o := range opts {
		o.applyCollector(c)
	}
	return c, nil
}

// Type returns "aws_iam".
func (c *Collector) Type() string { return Type }

// Payload returns the hello, with ECS task metadata hints if configured.
func (c *Collector) Payload(ctx context.Context, _ attestors.CollectRequest) ([]byte, error) {
	h := Hello{Version: 1}
	if c.cfg.ECSTaskMetadata {
		hint, err := c.ecsHint(ctx)
		if err != nil {
			return nil, err
		}
		h.ECS = hint
	}
	return json.Marshal(h)
}

// Answer signs sts:GetCallerIdentity with the challenge, and the name of
// the server it is for, in a signed header.
func (c *Collector) Answer(ctx context.Context, challenge []byte) ([]byte, error) {
	if len(challenge) < 16 || len(challenge) > 1024 {
		return nil, fmt.Errorf("awsiam: challenge of %d bytes out of range", len(challenge))
	}
	provider, err := c.provider()
	if err != nil {
		return nil, err
	}
	creds, err := provider.Retrieve(ctx)
	if err != nil {
		return nil, fmt.Errorf("awsiam: credentials: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+c.host+"/", strings.NewReader(Body))
	if err != nil {
		return nil, fmt.Errorf("awsiam: build request: %w", err)
	}
	req.Header.Set("Content-Type", contentTypes[0])
	req.Header.Set(ChallengeHeader, ChallengeValue(c.server, challenge))
	sum := sha256.Sum256([]byte(Body))
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "sts", c.region, c.now().UTC()); err != nil {
		return nil, fmt.Errorf("awsiam: sign: %w", err)
	}
	sr := SignedRequest{Method: req.Method, Host: c.host, Path: "/", Body: Body}
	for _, name := range []string{"Authorization", "Content-Type", "X-Amz-Date", "X-Amz-Security-Token", ChallengeHeader} {
		if v := req.Header.Get(name); v != "" {
			sr.Headers = append(sr.Headers, [2]string{name, v})
		}
	}
	return json.Marshal(sr)
}

func (c *Collector) provider() (aws.CredentialsProvider, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.creds != nil {
		return c.creds, nil
	}
	p, err := defaultCredentials(c.region)
	if err != nil {
		return nil, err
	}
	c.creds = p
	return c.creds, nil
}

// ecsHint reads ECS task metadata v4 /task.
func (c *Collector) ecsHint(ctx context.Context) (*ECSHint, error) {
	base := c.cfg.ECSMetadataURI
	if base == "" {
		base = os.Getenv("ECS_CONTAINER_METADATA_URI_V4")
	}
	if base == "" {
		return nil, fmt.Errorf("awsiam: ecs_task_metadata is on but ECS_CONTAINER_METADATA_URI_V4 is not set")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/task", nil)
	if err != nil {
		return nil, fmt.Errorf("awsiam: ECS metadata: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("awsiam: ECS metadata: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("awsiam: ECS metadata: %s", resp.Status)
	}
	var task struct {
		TaskARN string `json:"TaskARN"`
		Cluster string `json:"Cluster"`
		Family  string `json:"Family"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&task); err != nil {
		return nil, fmt.Errorf("awsiam: ECS metadata: %w", err)
	}
	return &ECSHint{TaskARN: task.TaskARN, Cluster: task.Cluster, Family: task.Family}, nil
}
