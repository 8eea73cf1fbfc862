package fleet

import (
	"os"
	"strings"
)

// LoadAvg returns the 1-, 5- and 15-minute load averages as /proc/loadavg
// prints them ("" when unreadable): the machine is shared, and every
// figure is reported with the load it was measured under.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
