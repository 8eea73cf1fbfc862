// Package telemetry owns what an operator watches: Prometheus metrics
// (Metrics, a private registry holding every hallmark_* series plus the Go
// and process collectors) and the HTTP endpoint that serves them next to
// the /live and /ready health checks (Serve). Both the server and the
// agent use it; call sites are one line (m.Attestation("tpm", "accepted"),
// defer m.StreamOpened(telemetry.StreamSDS)()), and every method of a nil
// *Metrics is a no-op, so tests and optional wiring can pass nil.
//
// Label values that can come from callers (attestor kinds) are bounded:
// only a fixed number of distinct values become series, the rest are
// counted as "other".
//
// It must not import server/, agent/ or attestors/.
package telemetry
