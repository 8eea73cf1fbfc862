package tpm

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/hallmarkid/hallmark/attestors"
	tpmdev "github.com/hallmarkid/hallmark/tpm"
)

// Collector is the agent half: an attestors.NodeCollector over the
// machine's TPM.
type Collector struct {
	dev          *tpmdev.Device
	ak           *tpmdev.AK
	ek           tpmdev.EK
	eventLogPath string
	log          *slog.Logger

	// mu guards agentKey.
	mu       sync.Mutex
	agentKey crypto.PublicKey
}

var _ attestors.NodeCollector = (*Collector)(nil)

// NewCollector opens the TPM, reads the EK and loads (or creates and
// persists in dataDir) the AK.
func NewCollector(cfg AgentConfig, dataDir string, log *slog.Logger) (*Collector, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if dataDir == "" {
		return nil, errors.New("tpm: collector: no data directory for the AK blob")
	}
	akAlg := tpmdev.KeyAlg(cfg.AKType)
	if akAlg == "" {
		akAlg = tpmdev.ECC
	}
	if akAlg != tpmdev.ECC && akAlg != tpmdev.RSA {
		return nil, fmt.Errorf("tpm: collector: ak_type %q: want ecc or rsa", cfg.AKType)
	}
	ekAlg := tpmdev.KeyAlg(cfg.EKType)
	if ekAlg == "" {
		ekAlg = tpmdev.RSA
	}
	if ekAlg != tpmdev.ECC && ekAlg != tpmdev.RSA {
		return nil, fmt.Errorf("tpm: collector: ek_type %q: want rsa or ecc", cfg.EKType)
	}
	dev, err := tpmdev.Open(cfg.Device, tpmdev.WithEK(ekAlg))
	if err != nil {
		return nil, err
	}
	ek, err := dev.EK()
	if err != nil {
		dev.Close()
		return nil, err
	}
	ak, err := dev.LoadOrCreateAK(dataDir, akAlg)
	if err != nil {
		dev.Close()
		return nil, err
	}
	ekHash, _ := tpmdev.PublicKeyHash(ek.Key)
	log.Info("tpm collector ready", "device", dev.String(), "ek_hash", ekHash, "ek_cert", ek.Cert != nil, "ak_type", string(akAlg))
	return &Collector{dev: dev, ak: ak, ek: ek, eventLogPath: cfg.EventLog, log: log}, nil
}

// Type returns "tpm".
func (c *Collector) Type() string { return Type }

// Device returns the open TPM, for diagnostics.
func (c *Collector) Device() *tpmdev.Device { return c.dev }

// Close releases the TPM.
func (c *Collector) Close() error { return c.dev.Close() }

// Payload returns the EK, its certificate and the AK public area, and
// remembers the agent key the quote must commit to.
func (c *Collector) Payload(ctx context.Context, req attestors.CollectRequest) ([]byte, error) {
	if req.AgentKey == nil {
		return nil, errors.New("tpm: collector: no agent key")
	}
	c.mu.Lock()
	c.agentKey = req.AgentKey
	c.mu.Unlock()
	return Marshal(Payload{Version: WireVersion, EKPublic: c.ek.Public, EKCert: c.ek.Cert, AKPublic: c.ak.Public})
}

// Answer activates the credential and quotes the requested PCRs with the
// server's nonce bound to the agent key.
func (c *Collector) Answer(ctx context.Context, challenge []byte) ([]byte, error) {
	ch, err := DecodeChallenge(challenge)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	agentKey := c.agentKey
	c.mu.Unlock()
	data, err := QuoteData(ch.Nonce, agentKey)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	secret, err := c.dev.ActivateCredential(c.ak, ch.Credential, ch.Secret)
	if err != nil {
		return nil, err
	}
	q, err := c.dev.Quote(c.ak, data, ch.Bank, ch.PCRs)
	if err != nil {
		return nil, err
	}
	var log []byte
	if c.eventLogPath != "none" {
		if log, err = tpmdev.ReadEventLog(c.eventLogPath); err != nil {
			return nil, err
		}
	}
	if len(log) > MaxEventLogSize {
		return nil, fmt.Errorf("tpm: collector: event log of %d bytes exceeds %d", len(log), MaxEventLogSize)
	}
	ans := Answer{Secret: secret, Quote: q.Attest, Signature: q.Signature, EventLog: log}
	for _, i := range ch.PCRs {
		ans.PCRs = append(ans.PCRs, PCRValue{Index: i, Value: q.PCRs[i]})
	}
	return Marshal(ans)
}
