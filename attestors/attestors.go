// Package attestors declares the three small interfaces that carry
// attestation: an agent-side evidence collector, a server-side verifier and
// a workload attestor. Each attestor kind lives in its own subpackage with
// its agent half and server half side by side.
//
// It must not import server/ or agent/.
package attestors

import (
	"context"
	"crypto"
	"errors"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/registration"
)

// ServerID returns the server's SPIFFE ID in td, spiffe://<td>/hallmark/server.
// Challenges and token audiences name it by default, so that evidence made
// for one deployment is refused by another.
func ServerID(td spiffeid.TrustDomain) (spiffeid.ID, error) {
	return spiffeid.FromSegments(td, "hallmark", "server")
}

// ChallengeFunc sends a challenge to the agent and returns its answer.
type ChallengeFunc func(ctx context.Context, challenge []byte) ([]byte, error)

// VerifyRequest is what a node verifier is given.
type VerifyRequest struct {
	// Payload is the agent's evidence, untrusted bytes.
	Payload []byte
	// Challenge runs a challenge/response round with the agent.
	Challenge ChallengeFunc
	// AgentKey is the public key of the CSR the agent wants signed; evidence
	// that can commit to a key (Nitro public_key, TPM) must commit to this.
	AgentKey crypto.PublicKey
	// TrustDomain is the server's trust domain.
	TrustDomain spiffeid.TrustDomain
	// Renewal is set when an attested agent renews over mTLS; CurrentID is
	// then its current agent ID and the verifier must yield the same ID.
	Renewal   bool
	CurrentID spiffeid.ID
}

// Result is a verifier's decision on success.
type Result struct {
	AgentID     spiffeid.ID
	Selectors   []registration.Selector
	CanReattest bool
	// Evidence holds digests of what was verified, for the audit log
	// (e.g. "ek_hash", "pcr0", "instance_id").
	Evidence map[string]string
}

// NodeVerifier is the server half of a node attestor.
type NodeVerifier interface {
	// Type is the attestation type on the wire, e.g. "join_token", "tpm".
	Type() string
	// Verify checks evidence and fails closed on any error. An error that
	// means the evidence arrived and proved false wraps ErrEvidenceRejected
	// (see Rejected); one that means it never arrived (a failed challenge
	// round, a deadline) wraps ErrNoEvidence or a context error.
	Verify(ctx context.Context, req VerifyRequest) (Result, error)
}

// Verifier errors are classified because a failed re-attestation of an
// attested agent has two outcomes: every failure refuses the renewal (the
// agent gets no SVID), but only evidence that was received and proved
// false (a bad signature or quote, a policy violation, evidence of another
// node) evicts the agent. A dropped connection, a timeout mid-challenge or
// an upstream service being down proves nothing about the node.
var (
	// ErrEvidenceRejected marks evidence that was received and proved false.
	ErrEvidenceRejected = errors.New("attestors: evidence rejected")
	// ErrNoEvidence marks evidence that never arrived, or arrived too late.
	ErrNoEvidence = errors.New("attestors: no evidence")
)

// Rejected marks err as evidence proved false (errors.Is(err,
// ErrEvidenceRejected)), keeping its message and chain. Rejected(nil) is nil.
func Rejected(err error) error {
	if err == nil {
		return nil
	}
	return &markedError{err: err, mark: ErrEvidenceRejected}
}

// NoEvidence marks err as evidence that never arrived. NoEvidence(nil) is nil.
func NoEvidence(err error) error {
	if err == nil {
		return nil
	}
	return &markedError{err: err, mark: ErrNoEvidence}
}

type markedError struct {
	err  error
	mark error
}

func (e *markedError) Error() string        { return e.err.Error() }
func (e *markedError) Unwrap() error        { return e.err }
func (e *markedError) Is(target error) bool { return target == e.mark }

// ProvedFalse reports whether err says the evidence was received and
// proved false, and nothing in it says evidence went missing: only then
// may a failed re-attestation evict. Unclassified errors are not proof.
func ProvedFalse(err error) bool {
	return errors.Is(err, ErrEvidenceRejected) && !errors.Is(err, ErrNoEvidence) &&
		!errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// CollectRequest is what an agent-side collector is given.
type CollectRequest struct {
	// AgentKey is the public key the agent will put in its CSR.
	AgentKey crypto.PublicKey
	// Renewal is set when collecting evidence for an SVID renewal.
	Renewal bool
}

// NodeCollector is the agent half of a node attestor.
type NodeCollector interface {
	Type() string
	// Payload returns the evidence to send first.
	Payload(ctx context.Context, req CollectRequest) ([]byte, error)
	// Answer answers one server challenge.
	Answer(ctx context.Context, challenge []byte) ([]byte, error)
}

// WorkloadAttestor derives selectors for a calling process.
type WorkloadAttestor interface {
	// Name is the selector type it produces, e.g. "unix", "k8s".
	Name() string
	// Attest returns the selectors for pid. A process the attestor has
	// nothing to say about yields no selectors and no error.
	Attest(ctx context.Context, pid int32) ([]registration.Selector, error)
}
