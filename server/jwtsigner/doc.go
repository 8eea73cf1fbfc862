// Package jwtsigner owns the server's JWT-SVID signing keys: their creation
// (ES256 by default, ES384 or RS256 on request), the key IDs (RFC 7638 JWK
// thumbprints), the public keys published as the trust domain's JWT
// bundle, the single key file of earlier versions, and the signing of
// JWT-SVIDs for SPIFFE IDs the caller has already authorised.
//
// Their rotation, persistence in a directory of their own (PKCS#8 PEM
// inside a JSON state file, mode 0600, written atomically; optionally
// shared with other servers through a KV store), HA adoption and operator
// actions are server/authority's engine, which the signer drives with its
// key kind (kind.go).
//
// The signer never decides who may have a token: the Node API checks that
// the entry is authorised for the calling agent before asking.
//
// # Rotation
//
// Keys rotate like the X.509 CA's authorities (server/ca): each key lives
// Config.KeyTTL; at 1/2 of the active key's lifetime Run prepares a
// successor and publishes it in JWTAuthorities at once, so agents and OIDC
// relying parties hold it before any token is signed with it; at 5/6 (and
// never sooner than 1/12 of the lifetime after publishing it) the
// successor becomes active. A token's exp never passes its key's expiry,
// so an old key stays published exactly until every token it signed has
// expired, and is then pruned. Changed fires at each of these steps.
//
// # Operator actions
//
// Like SPIRE's `localauthority jwt` commands, an operator can prepare the
// next key now (PrepareKey), activate the prepared one now (ActivateKey),
// taint an old key (TaintKey: still published, listed by TaintedKeyIDs,
// Changed fires so agents can replace its tokens) and revoke a tainted old
// key (RevokeKey: removed from JWTAuthorities, so its tokens stop
// validating). Each action first adopts the shared state and is persisted
// and shared before it takes effect; revoked key IDs are remembered in the
// state until the keys would have expired, so no server merges them back.
// Actions that make no sense (activating anything but the prepared key,
// tainting or revoking the active one, revoking an untainted one) fail
// with ErrRefused; unknown IDs with ErrUnknownKey.
//
// A signer that has not rotated yet keeps the single key file of earlier
// versions (KeyFileName); the first rotation replaces it with
// StateFileName.
//
// # Several servers
//
// With Config.Shared the whole key state — private keys included — is one
// versioned document under SharedStateKey in the database the servers
// share, so every server signs with the same active key and publishes the
// same bundle. As for the CA, each server re-reads the document before
// every rotation step and operator action, on SyncNow (the server calls it
// when the datastore announces a write of the document) and on every poll,
// adopts it when it differs, and writes its own change back by
// compare-and-swap against the bytes it read (a lost swap adopts the stored
// state and redoes the step); a key a server has signed with is merged back as old if a
// concurrent write dropped it, so nothing it issued stops verifying.
// Whoever can read that row holds the signing keys.
//
// It must not import the datastore, the API layer, attestors, or agent/;
// of the server it imports only server/authority.
package jwtsigner
