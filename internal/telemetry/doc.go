// Package telemetry owns what an operator watches: Prometheus metrics
// (Metrics, a private registry per daemon holding that daemon's hallmark_*
// series only, hallmark_build_info, and the Go and process collectors) and
// the HTTP endpoint that serves them next to the /live and /ready health
// checks (Serve). Both the server and the agent use it: New(Config{Daemon:
// Server}) or New(Config{Daemon: Agent}); a method for the other daemon's
// series does nothing, so no daemon exports a series that cannot move
// (a server exporting an agent SVID expiry of 0 fired the expiry alert).
//
// Call sites are one line (m.Attestation("tpm", "accepted"),
// defer m.StreamOpened(telemetry.StreamSDS)()); values read at scrape
// time are registered once as functions (m.AgentCache(stats),
// m.AuthorityExpiry("x509", read)); gRPC servers record per-RPC latency
// with m.ServerOptions(). Every method of a nil *Metrics is a no-op, so
// tests and optional wiring can pass nil.
//
// Label values that can come from callers or configuration (attestor
// kinds, datastore operations, limits, trust domains, RPC methods) are
// bounded: only a fixed number of distinct values become series, the rest
// are counted as "other". No SPIFFE ID is ever a label.
//
// It must not import server/, agent/ or attestors/.
package telemetry
