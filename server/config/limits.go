package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/hallmarkid/hallmark/internal/hclconf"
)

// NodeAPILimits bound what callers without an agent SVID can make the
// server hold on the Node API (see docs/operations.md, "Node API limits").
type NodeAPILimits struct {
	// AttestationTimeout bounds one attestation, challenges included;
	// FirstMessageTimeout the TLS handshake and the wait for its first
	// message (≤ AttestationTimeout).
	AttestationTimeout  time.Duration
	FirstMessageTimeout time.Duration
	// MaxInflightAttestations bounds attestations served at once.
	MaxInflightAttestations int
	// RatePerSource (per second) and BurstPerSource: the token bucket of
	// attestations per source (an IPv4 address, an IPv6 /64).
	RatePerSource  float64
	BurstPerSource int
	// MaxConns and MaxConnsPerSource bound connections without an agent
	// SVID; MaxMessageSize each message received on them.
	MaxConns          int
	MaxConnsPerSource int
	MaxMessageSize    int
}

// Defaults of the Node API limits.
const (
	DefaultAttestationTimeout        = 30 * time.Second
	DefaultFirstMessageTimeout       = 10 * time.Second
	DefaultMaxInflightAttestations   = 64
	DefaultAttestationRatePerSource  = 5.0
	DefaultAttestationBurstPerSource = 20
	DefaultMaxUnauthConns            = 256
	DefaultMaxUnauthConnsPerSource   = 8
	DefaultMaxUnauthMessageSize      = 512 << 10
	// MinUnauthMessageSize and MaxUnauthMessageSize bound
	// max_unauthenticated_message_size: below 32 KiB ordinary evidence
	// does not fit; above 16 MiB it would exceed the authenticated limit.
	MinUnauthMessageSize = 32 << 10
	MaxUnauthMessageSize = 16 << 20
)

// DefaultNodeAPILimits returns the defaults.
func DefaultNodeAPILimits() NodeAPILimits {
	return NodeAPILimits{
		AttestationTimeout:      DefaultAttestationTimeout,
		FirstMessageTimeout:     DefaultFirstMessageTimeout,
		MaxInflightAttestations: DefaultMaxInflightAttestations,
		RatePerSource:           DefaultAttestationRatePerSource,
		BurstPerSource:          DefaultAttestationBurstPerSource,
		MaxConns:                DefaultMaxUnauthConns,
		MaxConnsPerSource:       DefaultMaxUnauthConnsPerSource,
		MaxMessageSize:          DefaultMaxUnauthMessageSize,
	}
}

// limits decodes the Node API limits of the server block.
func (c *Config) limits(s hclconf.Section, raw *rawServer) hcl.Diagnostics {
	var diags hcl.Diagnostics
	l := DefaultNodeAPILimits()
	l.AttestationTimeout = s.Duration("attestation_timeout", raw.AttestationTimeout, l.AttestationTimeout, &diags)
	l.FirstMessageTimeout = s.Duration("attestation_first_message_timeout", raw.FirstMessageTimeout, l.FirstMessageTimeout, &diags)
	if l.FirstMessageTimeout > l.AttestationTimeout {
		at := "attestation_first_message_timeout"
		if !s.Set(at) {
			at = "attestation_timeout"
		}
		diags = append(diags, s.Errorf(at, summaryConflictingSetting,
			"attestation_first_message_timeout (%v) must not exceed attestation_timeout (%v).", l.FirstMessageTimeout, l.AttestationTimeout))
	}
	atLeastOne := func(name string, v int, def int) int {
		if !s.Set(name) {
			return def
		}
		if v < 1 || v > 1<<24 {
			diags = append(diags, s.Errorf(name, summaryInvalidValue, "%s %d is out of range 1-%d.", name, v, 1<<24))
			return def
		}
		return v
	}
	l.MaxInflightAttestations = atLeastOne("max_inflight_attestations", raw.MaxInflight, l.MaxInflightAttestations)
	l.BurstPerSource = atLeastOne("attestation_burst_per_source", raw.BurstPerSource, l.BurstPerSource)
	l.MaxConns = atLeastOne("max_unauthenticated_connections", raw.MaxConns, l.MaxConns)
	l.MaxConnsPerSource = atLeastOne("max_unauthenticated_connections_per_source", raw.MaxConnsPerSource, l.MaxConnsPerSource)
	if l.MaxConnsPerSource > l.MaxConns {
		at := "max_unauthenticated_connections_per_source"
		if !s.Set(at) {
			at = "max_unauthenticated_connections"
		}
		diags = append(diags, s.Errorf(at, summaryConflictingSetting,
			"max_unauthenticated_connections_per_source (%d) must not exceed max_unauthenticated_connections (%d).", l.MaxConnsPerSource, l.MaxConns))
	}
	if s.Set("attestation_rate_per_source") {
		if r := raw.RatePerSource; r > 0 && r <= 1e6 {
			l.RatePerSource = r
		} else {
			diags = append(diags, s.Errorf("attestation_rate_per_source", summaryInvalidValue,
				"attestation_rate_per_source %v must be greater than 0 (attestations per second; fractions such as 0.5 are allowed) and at most 1000000.", r))
		}
	}
	if s.Set("max_unauthenticated_message_size") {
		n, err := ParseSize(raw.MaxMessageSize)
		switch {
		case err != nil:
			diags = append(diags, s.Errorf("max_unauthenticated_message_size", summaryInvalidValue, "max_unauthenticated_message_size: %v.", err))
		case n < MinUnauthMessageSize || n > MaxUnauthMessageSize:
			diags = append(diags, s.Errorf("max_unauthenticated_message_size", summaryInvalidValue,
				"max_unauthenticated_message_size %q must be between 32KiB and 16MiB.", raw.MaxMessageSize))
		default:
			l.MaxMessageSize = n
		}
	}
	c.NodeAPI = l
	return diags
}

// ParseSize parses a size in bytes written with a unit: "524288B",
// "512KiB", "16MiB".
func ParseSize(s string) (int, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"B", 1}}
	for _, u := range units {
		num, ok := strings.CutSuffix(s, u.suffix)
		if !ok {
			continue
		}
		if num == "" || strings.TrimLeft(num, "0123456789") != "" {
			break
		}
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || n > math.MaxInt32/u.mult {
			return 0, fmt.Errorf("size %q is too large", s)
		}
		return int(n * u.mult), nil
	}
	return 0, fmt.Errorf("invalid size %q: write a whole number with a unit, such as \"512KiB\", \"2MiB\" or \"65536B\"", s)
}
