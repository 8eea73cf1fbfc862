// Package audit owns Hallmark's append-only audit log: one JSON object per
// line for every attestation decision, SVID issuance and admin change,
// written to a file (opened O_APPEND, mode 0600, never through a symlink)
// and/or stdout, with a request ID and a UTC timestamp on every record and
// a configurable fsync policy. The schema is documented in docs/audit.md.
//
// Log.Record has the signature of the Auditor interfaces declared by
// server/nodeapi and server/adminapi, so a *Log is passed to them as is.
// Records are encoded by the caller and handed to one writer goroutine that
// writes them in batches (group commit); Record never waits for the disk
// unless fsync is "always", and never panics.
//
// It must not import other server/ packages, agent/ or attestors/.
package audit
