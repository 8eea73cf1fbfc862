// Package authority is the rotation engine both signing authorities of the
// server share: the X.509 CA (server/ca) and the JWT signing keys
// (server/jwtsigner). It owns, for any kind of key:
//
//   - the state machine: one active key (it signs), at most one prepared
//     key (published, not yet signing), old keys kept until they expire;
//     an operator may taint an old key (still published, flagged so that
//     what it signed is replaced) and revoke a tainted one (removed, and
//     remembered until it would have expired so that no server merges it
//     back);
//   - the schedule (internal/rotation: prepare at 1/2 of the active
//     lifetime, activate at 5/6, prune at expiry) and the Run loop, which
//     SyncNow wakes early when the shared state changed elsewhere;
//   - persistence: one versioned JSON state document, in a 0600 file of
//     the kind's directory (written atomically) and, with Config.Shared, in
//     a KV store the servers share, written only by compare-and-swap
//     against what this server last read, with a bounded retry that adopts
//     the other server's state and redoes the step;
//   - adoption of another server's state, keeping every key this server
//     signed with until it expires;
//   - the operator actions (Prepare, Activate, Taint, Revoke) with their
//     refusals and log events.
//
// A kind plugs in through Kind (how to make a key, how to lay it out in the
// state document, what is published and how to tell that it changed), and
// optionally Policy (which persisted keys the current configuration still
// accepts) and SingleLayout (the single-key files of earlier versions).
// Spec carries the kind's words and limits, so that errors, log messages
// and the persisted documents stay those each kind had before the engine
// existed.
//
// It must not import server/ca, server/jwtsigner, the datastore, the API
// layer, attestors, or agent/.
package authority
