// Package nodeapi serves the agent-facing Node gRPC API: node attestation
// with challenge/response, agent SVID renewal (with re-attestation for
// attestors that support it), the push stream of authorised entries, and
// batch signing of workload SVIDs. Sync also carries the federated
// bundles, and lets a reconnecting agent resume with only what changed.
//
// It declares the small interfaces it needs (signer, agent store, audit)
// and must not import datastore backends or cmd/.
package nodeapi
