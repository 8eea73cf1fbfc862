// Package pidlock holds an exclusive advisory lock (flock) on a file for
// as long as a daemon runs, and records the holder's PID in the file so
// that a second daemon can say who holds it. The kernel drops the lock
// when the holder exits, however it exits, so no stale lock outlives a
// crash; the file itself stays and is reused.
//
// It imports nothing of Hallmark.
package pidlock
