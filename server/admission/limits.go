package admission

import (
	"errors"
	"fmt"
	"time"
)

// Limits bound what unauthenticated clients can make the server hold.
// The zero value is not usable: start from DefaultLimits.
type Limits struct {
	// MaxInflightAttestations bounds Attest calls being served at once,
	// all sources together; more are refused with ResourceExhausted.
	MaxInflightAttestations int
	// AttestationRatePerSource (per second) and AttestationBurstPerSource
	// are the token bucket each source address (an IPv4 address, an IPv6
	// /64) draws one token from per Attest call.
	AttestationRatePerSource  float64
	AttestationBurstPerSource int
	// MaxConns bounds connections without an agent SVID, all sources
	// together; MaxConnsPerSource bounds them per source, TLS handshakes
	// in progress included. Past either, a new connection is closed at
	// once, before any TLS work.
	MaxConns          int
	MaxConnsPerSource int
	// MaxMessageSize bounds each message received without an agent SVID
	// (the attestation evidence, challenge answers with event logs
	// included). Authenticated agents keep AuthenticatedMaxMessageSize.
	MaxMessageSize int
	// FirstMessageTimeout bounds the TLS handshake, the wait for the
	// first Attest message, and how long a connection without an agent
	// SVID may stay open without a call.
	FirstMessageTimeout time.Duration
	// AttestationTimeout bounds one whole attestation, challenges
	// included; a connection without an agent SVID lives at most
	// FirstMessageTimeout + AttestationTimeout (then a short grace).
	AttestationTimeout time.Duration
}

// Defaults. DefaultMaxMessageSize is 8.7× the largest attestation message
// built from real evidence (a TPM answer carrying a 43 KB Windows
// measured-boot log is 60 KB; see TestDefaultMessageLimitFitsRealEvidence):
// event logs up to ~390 KB fit (they travel base64-encoded in JSON).
const (
	DefaultMaxInflightAttestations   = 64
	DefaultAttestationRatePerSource  = 5.0
	DefaultAttestationBurstPerSource = 20
	DefaultMaxConns                  = 256
	DefaultMaxConnsPerSource         = 8
	DefaultMaxMessageSize            = 512 << 10
	DefaultFirstMessageTimeout       = 10 * time.Second
	DefaultAttestationTimeout        = 30 * time.Second

	// AuthenticatedMaxMessageSize is the message limit of agents
	// presenting their SVID (batch signing of up to 1,000 CSRs).
	AuthenticatedMaxMessageSize = 16 << 20
	// MinMaxMessageSize is the smallest MaxMessageSize accepted: below
	// it, ordinary evidence (a Nitro document, an EK certificate chain)
	// would not fit.
	MinMaxMessageSize = 32 << 10
)

// DefaultLimits returns the defaults.
func DefaultLimits() Limits {
	return Limits{
		MaxInflightAttestations:   DefaultMaxInflightAttestations,
		AttestationRatePerSource:  DefaultAttestationRatePerSource,
		AttestationBurstPerSource: DefaultAttestationBurstPerSource,
		MaxConns:                  DefaultMaxConns,
		MaxConnsPerSource:         DefaultMaxConnsPerSource,
		MaxMessageSize:            DefaultMaxMessageSize,
		FirstMessageTimeout:       DefaultFirstMessageTimeout,
		AttestationTimeout:        DefaultAttestationTimeout,
	}
}

// Validate reports the first setting that cannot work.
func (l Limits) Validate() error {
	switch {
	case l.MaxInflightAttestations < 1:
		return fmt.Errorf("admission: max in-flight attestations %d must be at least 1", l.MaxInflightAttestations)
	case !(l.AttestationRatePerSource > 0): // NaN too
		return fmt.Errorf("admission: attestation rate per source %v must be greater than 0", l.AttestationRatePerSource)
	case l.AttestationBurstPerSource < 1:
		return fmt.Errorf("admission: attestation burst per source %d must be at least 1", l.AttestationBurstPerSource)
	case l.MaxConns < 1 || l.MaxConnsPerSource < 1:
		return errors.New("admission: connection limits must be at least 1")
	case l.MaxConnsPerSource > l.MaxConns:
		return fmt.Errorf("admission: connections per source (%d) exceed the total (%d)", l.MaxConnsPerSource, l.MaxConns)
	case l.MaxMessageSize < MinMaxMessageSize || l.MaxMessageSize > AuthenticatedMaxMessageSize:
		return fmt.Errorf("admission: unauthenticated message size %d must be between %d and %d bytes",
			l.MaxMessageSize, MinMaxMessageSize, AuthenticatedMaxMessageSize)
	case l.FirstMessageTimeout <= 0 || l.AttestationTimeout <= 0:
		return errors.New("admission: timeouts must be greater than zero")
	case l.FirstMessageTimeout > l.AttestationTimeout:
		return fmt.Errorf("admission: first-message timeout %v exceeds the attestation timeout %v", l.FirstMessageTimeout, l.AttestationTimeout)
	}
	return nil
}
