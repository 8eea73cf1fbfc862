// Package tpm is the TPM 2.0 node attestor: the agent half (Collector,
// evidence from the machine's TPM through package hallmark/tpm) and the
// server half (Verifier) side by side, sharing the wire types in wire.go.
//
// The server verifies, failing closed, in this order: the EK (certificate
// chaining to a configured manufacturer root and not revoked by the
// configured CRLs, or EK hash allow-list), the AK's
// attributes, credential activation (MakeCredential to the EK, secret
// compared in constant time), the quote (structure, signature, nonce bound
// to the agent's CSR key, PCR selection and digest), the event log replayed
// against the quoted PCRs only, and the PCR and Secure Boot policy.
//
// It must not import server/ or agent/; the wiring into the binaries lives
// there.
package tpm
