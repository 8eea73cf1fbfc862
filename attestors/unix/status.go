package unix

import "github.com/hallmarkid/hallmark/internal/procstatus"

// procStatus is what the attestor takes from /proc/<pid>/status.
type procStatus struct {
	UID    uint32   // effective
	GID    uint32   // effective
	Groups []uint32 // supplementary, in the kernel's order
}

func fromStatus(st procstatus.Status) procStatus {
	return procStatus{UID: st.UID[procstatus.Effective], GID: st.GID[procstatus.Effective], Groups: st.Groups}
}

// parseStatus parses /proc/<pid>/status strictly (see procstatus.Parse).
func parseStatus(b []byte) (procStatus, error) {
	st, err := procstatus.Parse(b)
	return fromStatus(st), err
}

// readStatus reads and parses a status file.
func readStatus(path string) (procStatus, error) {
	st, err := procstatus.Read(path)
	return fromStatus(st), err
}

// openRead opens path read-only with a raw system call.
func openRead(path string) (int, error) { return procstatus.OpenRead(path) }
