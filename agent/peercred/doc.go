// Package peercred identifies the process on the other end of a gRPC
// connection over a unix socket from kernel credentials (SO_PEERCRED) and
// keeps a pidfd to that process, so that a caller that exits and whose PID is
// reused while it is being attested can be told apart from the original.
//
// The credentials are those at connect(): a caller that later calls exec(2)
// (say, of a setuid program) keeps its PID and pidfd, so StillAlive still
// succeeds while /proc/<pid> then describes the new program. Attestors read
// /proc; a consumer that wants connect-time identity too should compare
// UID/GID with what was attested.
//
// It owns the gRPC transport credentials for the agent's local endpoints
// (Workload API, SDS) and the AuthInfo they yield. It must not import
// server/, attestors/ or any other agent/ package.
package peercred
