// Package federation owns SPIFFE federation for the Hallmark server: the
// bundle endpoint that publishes this trust domain's bundle (profiles
// https_web and https_spiffe), and the fetcher that downloads, validates,
// refreshes and persists the bundles of federated trust domains.
//
// Bundles travel in the SPIFFE bundle format (a JWKS with x509-svid and
// jwt-svid keys, spiffe_sequence and spiffe_refresh_hint), parsed with
// go-spiffe's spiffebundle. A fetched bundle is accepted only when it came
// over HTTPS from the configured endpoint (web PKI, or an SVID with the
// configured SPIFFE ID that verifies against the last accepted bundle of
// that trust domain), is at most MaxBundleSize bytes, parses, names no
// other trust domain and does not roll spiffe_sequence back. An accepted
// bundle with no keys revokes the trust domain. Foreign bundles are kept
// apart from the server's own and are never served by the endpoint.
//
// An operator may also set bundles by hand (Fetcher.SetBundle): over a
// relationship's bundle whatever its sequence, or as a static bundle of a
// trust domain without a relationship, never fetched, until DeleteBundle.
//
// The package takes its inputs as functions and one-method-pair interfaces
// (the server's bundle, its SVID, a GetKV/PutKV store). It must not import
// server wiring (server, nodeapi, adminapi), the CA, the agent or
// attestors.
package federation
