package peercred

import "sync/atomic"

// Memo holds one value for the life of a connection: a result that is
// valid only for the process that connected, such as a workload
// attestation (agent/workloadattest reuses one while Verify and the
// attestors' fingerprints say nothing changed). Copies of an AuthInfo
// share their connection's Memo; it is garbage with the connection. It is
// safe for concurrent use.
type Memo struct {
	v atomic.Pointer[any]
}

// Load returns the value last stored, or nil.
func (m *Memo) Load() any {
	if p := m.v.Load(); p != nil {
		return *p
	}
	return nil
}

// Store replaces the value.
func (m *Memo) Store(v any) { m.v.Store(&v) }

// Memo returns the connection's memo, or nil for an AuthInfo that does
// not come from a handshake.
func (a AuthInfo) Memo() *Memo {
	if a.proc == nil {
		return nil
	}
	return &a.proc.memo
}
