// Package datastoretest is the conformance suite every datastore backend
// must pass: Run(t, open) exercises a datastore.Store through its
// interface only, including the concurrency guarantees (one winner of a
// CreateAgent race, one consumer of a join token) and bulk-create
// semantics.
//
// Contract details the suite pins down beyond datastore.go's comments:
//   - An entry's CreatedAt and an agent's CreatedAt/UpdatedAt are set by
//     the store; what CreateEntries returns equals what GetEntry returns
//     later (a backend that stores microseconds truncates before returning).
//   - Caller-supplied times round-trip exactly at second precision.
//   - Empty lists may come back as nil; selector order is kept.
//   - A new store is at revision 0.
//   - ConsumeJoinToken returns exactly datastore.ErrNotFound (not wrapped)
//     for unknown and expired tokens alike.
//   - A caller-chosen entry ID that is already taken is reported like a
//     similar entry: ErrAlreadyExists for that entry, the rest proceed.
//   - UpdateEntry ignores the Revision and CreatedAt it is given, keeps
//     the stored CreatedAt, and its event is indistinguishable from a
//     create's; an entry may be updated to its own (SPIFFE ID, parent,
//     selector set), and a refused update changes nothing, not even the
//     revision.
//
// It imports only the datastore interfaces, registration and go-spiffe;
// it must not import any backend.
package datastoretest
