// Package ca owns the server's X.509 certificate authority: the self-signed
// root of the trust domain, its persistence on disk (PKCS#8 key, PEM
// certificate, written atomically), the signing of X.509-SVIDs for SPIFFE IDs
// the caller has already authorised, and the parsing of untrusted CSRs.
//
// The CA never takes identity from a CSR: only its public key is used, and
// the leaf carries exactly the SPIFFE ID passed in X509SVIDParams.
//
// It must not import the datastore, the API layer, attestors, or agent/.
// Rotation of the root is not implemented yet: New warns when the persisted
// root is expired or within 1/6 of its lifetime of expiry.
package ca
