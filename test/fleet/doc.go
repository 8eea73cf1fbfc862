// Package fleet is a load generator for the server's Node API: it runs
// many simulated agents in one process, each speaking the real Node API
// over real mTLS through the agent's own client (agent/client) — attest
// with a join token, hold Node.Sync (resuming after a reconnect, as the
// agent does), batch-sign the SVIDs of its entries with real keys and
// CSRs, renew its SVID at half-life — and records when each agent holds
// what, so that benchmarks can time a change from the admin API to every
// agent that must see it (see docs/scale.md and `make bench-fleet`).
//
// It is for tests and benchmarks only: nothing in cmd/, server/ or agent/
// may import it.
package fleet
