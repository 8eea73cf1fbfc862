package tpm

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Type is the attestation type on the wire.
const Type = "tpm"

// WireVersion is the version of the wire format in Payload.Version.
const WireVersion = 1

// Limits on untrusted wire messages.
const (
	MaxPayloadSize   = 64 << 10
	MaxChallengeSize = 16 << 10
	MaxAnswerSize    = 2 << 20
	MaxEventLogSize  = 1 << 20
	MaxEKChain       = 4
	maxStructSize    = 4096 // a TPMT_PUBLIC, TPMS_ATTEST or TPMT_SIGNATURE
	maxCertSize      = 8192
)

// NonceSize is the size of the server's quote nonce.
const NonceSize = 32

// Payload is the agent's first message.
type Payload struct {
	Version int `json:"version"`
	// EKPublic is the EK's TPMT_PUBLIC.
	EKPublic []byte `json:"ek_public"`
	// EKCert is the EK certificate (DER) from NV, if any.
	EKCert []byte `json:"ek_cert,omitempty"`
	// EKChain holds intermediate certificates (DER), untrusted hints.
	EKChain [][]byte `json:"ek_chain,omitempty"`
	// AKPublic is the AK's TPMT_PUBLIC.
	AKPublic []byte `json:"ak_public"`
}

// Challenge is the server's one challenge round.
type Challenge struct {
	// Nonce is fresh from crypto/rand; the quote's qualifying data is
	// QuoteData(Nonce, agent key).
	Nonce []byte `json:"nonce"`
	// Credential and Secret are MakeCredential's TPM2B_ID_OBJECT and
	// TPM2B_ENCRYPTED_SECRET contents, for ActivateCredential.
	Credential []byte `json:"credential"`
	Secret     []byte `json:"secret"`
	// Bank and PCRs are the selection to quote.
	Bank string `json:"bank"`
	PCRs []int  `json:"pcrs"`
}

// PCRValue is one quoted PCR.
type PCRValue struct {
	Index int    `json:"index"`
	Value []byte `json:"value"`
}

// Answer is the agent's answer to a Challenge.
type Answer struct {
	// Secret is the activated credential.
	Secret []byte `json:"secret"`
	// Quote is the TPMS_ATTEST the AK signed; Signature its TPMT_SIGNATURE.
	Quote     []byte `json:"quote"`
	Signature []byte `json:"signature"`
	// PCRs are the values of the quoted PCRs.
	PCRs []PCRValue `json:"pcrs"`
	// EventLog is the firmware's binary measurement log, if any.
	EventLog []byte `json:"event_log,omitempty"`
}

// QuoteData returns the quote's qualifying data: SHA-256 over a label, the
// server's nonce and the agent key's PKIX DER, so a quote can neither be
// replayed nor lifted onto another CSR.
func QuoteData(nonce []byte, agentKey crypto.PublicKey) ([]byte, error) {
	if len(nonce) < 16 {
		return nil, fmt.Errorf("tpm: nonce of %d bytes is too short", len(nonce))
	}
	if agentKey == nil {
		return nil, errors.New("tpm: no agent key to bind the quote to")
	}
	der, err := x509.MarshalPKIXPublicKey(agentKey)
	if err != nil {
		return nil, fmt.Errorf("tpm: agent key: %w", err)
	}
	h := sha256.New()
	h.Write([]byte("hallmark tpm quote v1\x00"))
	h.Write(nonce)
	h.Write(der)
	return h.Sum(nil), nil
}

// decodeStrict decodes one JSON value, refusing unknown fields, trailing
// data and oversized input.
func decodeStrict(b []byte, limit int, what string, v any) error {
	if len(b) > limit {
		return fmt.Errorf("tpm: %s of %d bytes exceeds %d", what, len(b), limit)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("tpm: decode %s: %w", what, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("tpm: decode %s: trailing data", what)
	}
	return nil
}

// DecodePayload decodes and bounds-checks an agent payload.
func DecodePayload(b []byte) (*Payload, error) {
	var p Payload
	if err := decodeStrict(b, MaxPayloadSize, "payload", &p); err != nil {
		return nil, err
	}
	switch {
	case p.Version != WireVersion:
		return nil, fmt.Errorf("tpm: payload version %d, want %d", p.Version, WireVersion)
	case len(p.EKPublic) == 0 || len(p.EKPublic) > maxStructSize:
		return nil, fmt.Errorf("tpm: payload: EK public of %d bytes", len(p.EKPublic))
	case len(p.AKPublic) == 0 || len(p.AKPublic) > maxStructSize:
		return nil, fmt.Errorf("tpm: payload: AK public of %d bytes", len(p.AKPublic))
	case len(p.EKCert) > maxCertSize:
		return nil, fmt.Errorf("tpm: payload: EK certificate of %d bytes", len(p.EKCert))
	case len(p.EKChain) > MaxEKChain:
		return nil, fmt.Errorf("tpm: payload: more than %d chain certificates", MaxEKChain)
	}
	for _, c := range p.EKChain {
		if len(c) == 0 || len(c) > maxCertSize {
			return nil, fmt.Errorf("tpm: payload: chain certificate of %d bytes", len(c))
		}
	}
	return &p, nil
}

// DecodeChallenge decodes and bounds-checks a server challenge.
func DecodeChallenge(b []byte) (*Challenge, error) {
	var c Challenge
	if err := decodeStrict(b, MaxChallengeSize, "challenge", &c); err != nil {
		return nil, err
	}
	switch {
	case len(c.Nonce) < 16 || len(c.Nonce) > 64:
		return nil, fmt.Errorf("tpm: challenge: nonce of %d bytes", len(c.Nonce))
	case len(c.Credential) == 0 || len(c.Secret) == 0:
		return nil, errors.New("tpm: challenge: no credential")
	case len(c.PCRs) == 0 || len(c.PCRs) > 24:
		return nil, fmt.Errorf("tpm: challenge: %d PCRs selected", len(c.PCRs))
	}
	return &c, nil
}

// DecodeAnswer decodes and bounds-checks an agent answer.
func DecodeAnswer(b []byte) (*Answer, error) {
	var a Answer
	if err := decodeStrict(b, MaxAnswerSize, "answer", &a); err != nil {
		return nil, err
	}
	switch {
	case len(a.Quote) == 0 || len(a.Quote) > maxStructSize:
		return nil, fmt.Errorf("tpm: answer: quote of %d bytes", len(a.Quote))
	case len(a.Signature) == 0 || len(a.Signature) > maxStructSize:
		return nil, fmt.Errorf("tpm: answer: signature of %d bytes", len(a.Signature))
	case len(a.PCRs) > 24:
		return nil, fmt.Errorf("tpm: answer: %d PCR values", len(a.PCRs))
	case len(a.EventLog) > MaxEventLogSize:
		return nil, fmt.Errorf("tpm: answer: event log of %d bytes exceeds %d", len(a.EventLog), MaxEventLogSize)
	}
	return &a, nil
}

// Marshal encodes a wire message as JSON.
func Marshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("tpm: encode: %w", err)
	}
	return b, nil
}
