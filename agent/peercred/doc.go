// Package peercred identifies the process on the other end of a gRPC
// connection over a unix socket from kernel credentials (SO_PEERCRED) and
// keeps a pidfd to that process, so that a caller that exits and whose PID is
// reused while it is being attested can be told apart from the original.
//
// The credentials are those at connect(). A process keeps its PID and pidfd
// across exec(2), setuid(2) and setgid(2), so liveness alone would let a
// process connect, hand the connection to a helper and exec a program with
// another identity. The handshake therefore also records the process's
// executable (device and inode of /proc/<pid>/exe) and its credentials
// (/proc/<pid>/status: real, effective, saved and filesystem IDs,
// supplementary groups), and AuthInfo.Verify refuses a caller for which any
// of them changed. Callers attest from /proc and then Verify before using
// the result, and Verify again before each push on a long-lived stream.
// Each connection holds two descriptors besides its socket: the pidfd and
// /proc/<pid>/status, which Verify re-reads with one pread(2). Its Memo
// holds a result valid for the connected process only (the Workload API's
// reused attestation), for the life of the connection.
//
// It owns the gRPC transport credentials for the agent's local endpoints
// (Workload API, SDS) and the AuthInfo they yield. It must not import
// server/, attestors/ or any other agent/ package.
package peercred
