// Package unix is the "unix" workload attestor: it turns a calling process's
// kernel-visible identity into selectors with SPIRE's names, so that
// registrations carry over: uid:, user:, gid:, group:, supplementary_gid:,
// supplementary_group: and, when enabled, path: and sha256: of the
// executable.
//
// It reads /proc only: the caller must pass a PID in the PID namespace of
// the /proc it is configured with, and must check afterwards that the PID
// still names the process that connected, unchanged (agent/peercred
// AuthInfo.Verify).
//
// It must not import server/ or agent/.
package unix
