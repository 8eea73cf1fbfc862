package uds

// CheckDialAs is CheckDial trusting the given uids instead of root and
// the caller.
var CheckDialAs = checkDial
