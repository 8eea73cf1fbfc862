// Package ca owns the server's X.509 certificate authority: the authorities
// of the trust domain (self-signed roots, or intermediates of an upstream CA
// read from disk), the bundle they form, the single-root layout of earlier
// versions, the signing of X.509-SVIDs for SPIFFE IDs the caller has
// already authorised, and the parsing of untrusted CSRs.
//
// Their rotation, persistence (Dir, written atomically, keys 0600;
// optionally shared with other servers through a KV store), HA adoption and
// operator actions are server/authority's engine, which the CA drives with
// its issuer kind (kind.go): how an authority is minted (root or upstream
// intermediate), laid out in the state document, checked against the
// configuration (Policy), and what it publishes (the bundle and its
// digest).
//
// The CA never takes identity from a CSR: only its public key is used, and
// the leaf carries exactly the SPIFFE ID passed in X509SVIDParams.
//
// # Rotation
//
// The CA holds an active authority (it signs), at most one prepared next
// authority, and old ones. Run (through Rotate) prepares the next authority
// at 1/2 of the active lifetime and publishes it in Bundle at once, so
// agents and workloads trust it before anything is signed with it; it
// activates it at 5/6 of the active lifetime, and never sooner than 1/12 of
// that lifetime after publishing it (unless the active one expires first);
// old authorities stay in Bundle until they expire and are then pruned.
// Leaves never outlive their issuer. The schedule is a function of the
// lifetimes only, so short TTLs rotate quickly. BundleChanged and
// BundleSequence let the Node API push each change.
//
// # Operator actions
//
// Like SPIRE's `localauthority x509` commands, an operator can prepare the
// next authority now (PrepareAuthority), activate the prepared one now
// (ActivateAuthority), taint an old one (TaintAuthority) and revoke a
// tainted old one (RevokeAuthority). A tainted authority stays in Bundle,
// so what it signed keeps verifying until re-minted, but tainting counts
// as a bundle change (BundleChanged, BundleSequence) and
// TaintedAuthorities lists it, so that agents re-mint every SVID under it.
// Revoking removes it from Bundle. Each action first adopts the shared
// state and is persisted and shared before it takes effect; revoked IDs
// stay in the state until the authority would have expired, so no server
// merges them back. Actions that make no sense fail with ErrRefused,
// unknown IDs with ErrUnknownAuthority.
//
// With an upstream CA, every authority is an intermediate (CA, path length
// 0, URI SAN of the trust domain, NotAfter no later than the upstream's),
// SVID chains carry it and the upstream's intermediates, and Bundle is the
// upstream trust anchors: rotation then rarely changes the bundle.
//
// # Several servers
//
// With Config.Shared, the whole authority state — private keys included —
// is one versioned document under SharedStateKey in the database the
// servers share. That makes every server able to sign with the same
// authority and keeps bundles identical, at a price: whoever can read that
// row (database administrators, backups) holds the CA keys, so the
// database must be protected like the CA itself. Per-server authorities
// would avoid that but multiply the trust anchors; we chose one key set.
// Each server re-reads the document before every rotation step and
// operator action, on SyncNow (the server calls it when the datastore
// announces a write of the document) and on every poll, adopts it when it
// differs, and writes its own change back by compare-and-swap
// (KVStore.SwapKV) against the bytes it read: when two servers prepare at
// once, the first write wins; the other's swap fails, and it adopts the
// stored state and redoes its step on it (a few times at most) before
// publishing anything, so its own candidate never reaches its bundle. An
// authority a server has signed with is never dropped before it expires
// (it is merged back as old), so nothing it issued stops verifying.
//
// It must not import the datastore, the API layer, attestors, or agent/;
// of the server it imports only server/authority.
package ca
