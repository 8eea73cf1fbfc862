// Package peercred identifies the process on the other end of a gRPC
// connection over a unix socket from kernel credentials (SO_PEERCRED) and
// keeps a pidfd to that process, so that a caller that exits and whose PID is
// reused while it is being attested can be told apart from the original.
//
// It owns the gRPC transport credentials for the agent's local endpoints
// (Workload API, SDS) and the AuthInfo they yield. It must not import
// server/, attestors/ or any other agent/ package.
package peercred
