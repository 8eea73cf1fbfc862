// Package awsnitro owns the "aws_nitro" node attestor: AWS Nitro Enclave
// attestation documents (COSE_Sign1, ES384) produced by the Nitro Security
// Module inside an enclave.
//
// The server half ([Verifier]) decodes the document with a bounded, strict
// CBOR decoder, validates the certificate chain up to the pinned AWS Nitro
// Enclaves Root G1 (embedded), checks the COSE signature with the
// chain-validated leaf key, bounds the document's age, requires the nonce to
// equal a fresh server challenge and the public_key field to equal the PKIX
// DER of the agent's CSR key, applies the PCR policy and rejects debug-mode
// enclaves unless allowed. The agent half ([Collector]) asks /dev/nsm for a
// document over the server's challenge.
//
// It must not import server/, agent/ or any other attestor.
package awsnitro
