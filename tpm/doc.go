// Package tpm owns access to a TPM 2.0 device for the agent: opening
// /dev/tpmrm0 or a swtpm socket, reading the endorsement key and its
// certificate from NV, creating and persisting an attestation key,
// credential activation, PCR quotes and the measured-boot event log.
//
// All commands go through one connection at a time behind a mutex (swtpm
// serves one connection at a time); socket devices are dialled per
// operation so that other tools can use the TPM in between. Every transient
// object is flushed before an operation returns.
//
// It must not import server/, agent/ or attestors/: it is device access
// only, and the verification logic lives in attestors/tpm.
package tpm
