// Package jwtsigner owns the server's JWT-SVID signing keys: their creation
// (ES256 by default, ES384 or RS256 on request), their persistence in a
// directory of their own (PKCS#8 PEM, mode 0600, written atomically), the
// key ID (the RFC 7638 JWK thumbprint, so it is stable across restarts
// without a second file), the public keys published as the trust domain's
// JWT bundle, and the signing of JWT-SVIDs for SPIFFE IDs the caller has
// already authorised.
//
// The signer never decides who may have a token: the Node API checks that
// the entry is authorised for the calling agent before asking.
//
// It must not import the datastore, the API layer, attestors, or agent/.
// Key rotation is not implemented yet; the key set is kept as a list with
// one active key so that preparing and publishing a next key can be added
// without changing the API.
package jwtsigner
