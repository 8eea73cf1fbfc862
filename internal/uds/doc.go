// Package uds creates and dials unix sockets safely.
//
// A unix socket is only as trustworthy as the directories above it: whoever
// can rename an entry on its path can put a socket of their own in its
// place, and every client then talks to them. So a daemon listens only in
// a directory it owns that grants nobody else more than the mode asked for
// (0700 for an admin socket, 0755 for a public one), below ancestors owned
// by root or by itself that nobody else may write to (a sticky directory
// such as /tmp excepted: there only an entry's owner can rename it). A
// missing directory is created, then checked like an existing one. The
// socket's own directory and the socket may not be symlinks.
//
// A socket in use is never unlinked: a daemon holds a lock file next to
// its socket (<socket>.lock) for as long as it listens, and an existing
// socket is removed only when nothing answers on it. On close a listener
// removes its socket only if the path still names the socket it created.
//
// Clients (CheckDial) apply the same rules from the other side: the
// socket, its directory and every directory above it must be owned by
// root or by the calling user.
//
// It imports nothing of Hallmark but internal/pidlock.
package uds
