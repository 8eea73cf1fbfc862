package awsnitro

import (
	"bytes"
	"crypto/x509"
	_ "embed"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"
	"time"
)

// Type is the attestation type on the wire.
const Type = "aws_nitro"

// Defaults for ServerConfig.
const (
	DefaultMaxAge    = 5 * time.Minute
	DefaultClockSkew = 30 * time.Second
)

// RootG1SHA256 is the SHA-256 of the DER of the AWS Nitro Enclaves Root G1.
const RootG1SHA256 = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"

//go:embed nitro-root-g1.pem
var rootG1PEM []byte

// RootG1 returns the embedded, pinned AWS Nitro Enclaves Root G1 certificate.
func RootG1() *x509.Certificate { return rootG1 }

var rootG1 = func() *x509.Certificate {
	blk, _ := pem.Decode(rootG1PEM)
	if blk == nil {
		panic("awsnitro: embedded root is not PEM")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		panic("awsnitro: embedded root: " + err.Error())
	}
	if fingerprint(c.Raw) != RootG1SHA256 {
		panic("awsnitro: embedded root fingerprint mismatch")
	}
	return c
}()

// ServerConfig configures the verifier. It is decoded from HCL.
type ServerConfig struct {
	// MaxAge bounds how old a document may be (Go duration, default "5m").
	MaxAge string `hcl:"max_age,optional"`
	// ClockSkew bounds how far in the future a document's timestamp may be
	// (default "30s").
	ClockSkew string `hcl:"clock_skew,optional"`
	// AllowDebug accepts debug-mode enclaves (PCR0-2 all zero). Never in
	// production: a debug enclave's memory is readable by its parent.
	AllowDebug bool `hcl:"allow_debug,optional"`
	// PCRn are allow-lists of hex SHA-384 values; when one is set, the
	// document must carry that PCR with one of the listed values.
	PCR0 []string `hcl:"pcr0,optional"`
	PCR1 []string `hcl:"pcr1,optional"`
	PCR2 []string `hcl:"pcr2,optional"`
	PCR3 []string `hcl:"pcr3,optional"`
	PCR4 []string `hcl:"pcr4,optional"`
	PCR8 []string `hcl:"pcr8,optional"`
}

// AgentConfig configures the collector. It is decoded from HCL.
type AgentConfig struct {
	// Device is the NSM device path (default "/dev/nsm").
	Device string `hcl:"device,optional"`
}

// policy is the validated form of ServerConfig.
type policy struct {
	maxAge     time.Duration
	skew       time.Duration
	allowDebug bool
	pcrs       map[uint][][]byte
}

func (c ServerConfig) policy() (policy, error) {
	p := policy{maxAge: DefaultMaxAge, skew: DefaultClockSkew, allowDebug: c.AllowDebug, pcrs: map[uint][][]byte{}}
	var err error
	if c.MaxAge != "" {
		if p.maxAge, err = time.ParseDuration(c.MaxAge); err != nil || p.maxAge <= 0 {
			return p, fmt.Errorf("awsnitro: config: max_age %q: want a positive duration", c.MaxAge)
		}
	}
	if c.ClockSkew != "" {
		if p.skew, err = time.ParseDuration(c.ClockSkew); err != nil || p.skew < 0 {
			return p, fmt.Errorf("awsnitro: config: clock_skew %q: want a non-negative duration", c.ClockSkew)
		}
	}
	for idx, list := range map[uint][]string{0: c.PCR0, 1: c.PCR1, 2: c.PCR2, 3: c.PCR3, 4: c.PCR4, 8: c.PCR8} {
		if list == nil {
			continue
		}
		if len(list) == 0 {
			return p, fmt.Errorf("awsnitro: config: pcr%d: empty allow-list", idx)
		}
		for _, h := range list {
			v, err := hex.DecodeString(strings.TrimSpace(h))
			if err != nil || len(v) != 48 {
				return p, fmt.Errorf("awsnitro: config: pcr%d: %q is not 96 hex digits (SHA-384)", idx, h)
			}
			p.pcrs[idx] = append(p.pcrs[idx], v)
		}
	}
	return p, nil
}

func (p policy) checkPCRs(pcrs map[uint][]byte) error {
	for idx, allowed := range p.pcrs {
		got, ok := pcrs[idx]
		if !ok {
			return fmt.Errorf("awsnitro: PCR%d is required by policy but missing", idx)
		}
		match := false
		for _, a := range allowed {
			if bytes.Equal(a, got) {
				match = true
				break
			}
		}
		if !match {
			return fmt.Errorf("awsnitro: PCR%d %s is not in the allow-list", idx, hex.EncodeToString(got))
		}
	}
	return nil
}
