package awsnitro

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/hf/nsm"
	"github.com/hf/nsm/request"

	"github.com/hallmarkid/hallmark/attestors"
)

// NSM is what the collector needs from the Nitro Security Module: an
// attestation document over a nonce and a public key.
type NSM interface {
	Attest(nonce, userData, publicKey []byte) ([]byte, error)
}

// CollectorOption configures a Collector.
type CollectorOption interface{ applyCollector(*Collector) }

type collectorOptionFunc func(*Collector)

func (f collectorOptionFunc) applyCollector(c *Collector) { f(c) }

// WithNSM replaces the /dev/nsm device, e.g. with a software NSM in tests.
func WithNSM(n NSM) CollectorOption { return collectorOptionFunc(func(c *Collector) { c.nsm = n }) }

// Collector is the agent half of the aws_nitro attestor. It runs inside the
// enclave.
type Collector struct {
	log    *slog.Logger
	device string
	nsm    NSM

	// mu guards agentKey, the PKIX DER of the key from the last Payload call.
	mu       sync.Mutex
	agentKey []byte
}

var _ attestors.NodeCollector = (*Collector)(nil)

// NewCollector returns a collector. The NSM device is opened on first use.
func NewCollector(cfg AgentConfig, log *slog.Logger, opts ...CollectorOption) (*Collector, error) {
	if log == nil {
		log = slog.Default()
	}
	c := &Collector{log: log, device: cfg.Device}
	if c.device == "" {
		c.device = "/dev/nsm"
	}
	for _, o := range opts {
		o.applyCollector(c)
	}
	if c.nsm == nil {
		c.nsm = &deviceNSM{path: c.device}
	}
	return c, nil
}

// Type returns "aws_nitro".
func (c *Collector) Type() string { return Type }

// Payload remembers the agent key to bind and returns the hello message.
func (c *Collector) Payload(_ context.Context, req attestors.CollectRequest) ([]byte, error) {
	if req.AgentKey == nil {
		return nil, errors.New("awsnitro: no agent key")
	}
	der, err := x509.MarshalPKIXPublicKey(req.AgentKey)
	if err != nil {
		return nil, fmt.Errorf("awsnitro: agent key: %w", err)
	}
	if len(der) > MaxFieldSize {
		return nil, fmt.Errorf("awsnitro: agent key is %d bytes, more than the %d an NSM accepts", len(der), MaxFieldSize)
	}
	c.mu.Lock()
	c.agentKey = der
	c.mu.Unlock()
	return json.Marshal(Hello{Version: 1})
}

// Answer returns an attestation document whose nonce is the challenge and
// whose public_key is the agent key's PKIX DER.
func (c *Collector) Answer(_ context.Context, challenge []byte) ([]byte, error) {
	if len(challenge) < 16 || len(challenge) > MaxFieldSize {
		return nil, fmt.Errorf("awsnitro: challenge of %d bytes out of range", len(challenge))
	}
	c.mu.Lock()
	key := c.agentKey
	c.mu.Unlock()
	if key == nil {
		return nil, errors.New("awsnitro: Answer before Payload")
	}
	doc, err := c.nsm.Attest(challenge, nil, key)
	if err != nil {
		return nil, fmt.Errorf("awsnitro: nsm attestation: %w", err)
	}
	return doc, nil
}

// deviceNSM talks to the NSM device with one session per request.
type deviceNSM struct{ path string }

func (d *deviceNSM) Attest(nonce, userData, publicKey []byte) ([]byte, error) {
	sess, err := nsm.OpenSession(nsm.Options{
		Open:    func() (nsm.FileDescriptor, error) { return os.Open(d.path) },
		Syscall: nsm.DefaultOptions.Syscall,
	})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", d.path, err)
	}
	defer sess.Close()
	res, err := sess.Send(&request.Attestation{Nonce: nonce, UserData: userData, PublicKey: publicKey})
	if err != nil {
		return nil, err
	}
	if res.Error != "" {
		return nil, fmt.Errorf("nsm error %s", res.Error)
	}
	if res.Attestation == nil || len(res.Attestation.Document) == 0 {
		return nil, errors.New("nsm returned no document")
	}
	return res.Attestation.Document, nil
}
