// Package sds serves Envoy's Secret Discovery Service (SDS v3:
// envoy.service.secret.v3.SecretDiscoveryService) from the agent's cache:
// a caller's X.509-SVIDs as TLS certificates and the trust bundles as
// validation contexts (the own trust domain's, and those of the trust
// domains the caller's entries federate with: "ALL" holds both), pushed
// on every rotation, entry change or bundle change to exactly the streams
// whose secrets changed.
//
// Callers are authorized only by their kernel credentials (SO_PEERCRED,
// through the agent's workload attestation), never by anything Envoy says
// about itself: node.id and node.cluster are logged, not trusted.
//
// It owns the SDS protocol (state-of-the-world StreamSecrets, unary
// FetchSecrets and incremental DeltaSecrets), the resource names (SPIRE's
// "default", "ROOTCA", "ALL", SPIFFE IDs and trust-domain IDs, and Istio's
// "file-root:" and "file-cert:" names), and the translation to Envoy's
// Secret protos.
//
// It must not import the Workload API package, server packages or
// agent wiring (package agent); it depends on agent/cache and
// agent/workloadattest only.
package sds
