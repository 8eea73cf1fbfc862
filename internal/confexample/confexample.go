// Package confexample reads the commented-out example blocks of the
// example configurations in conf/, so that the server's and the agent's
// tests can check each one is valid as written and the files cannot drift
// from the code.
package confexample

import (
	"regexp"
	"strings"
)

// start opens a commented-out example block: "# kind {" or
// "# kind "label" {" at the start of a line.
var start = regexp.MustCompile(`^# ([a-z0-9_]+)( "[a-z0-9_]+")? \{$`)

// Uncomment returns the commented-out example blocks of src, uncommented:
// from a line matching "# kind {" to the next "# }".
func Uncomment(src string) (blocks []string) {
	var cur []string
	for _, line := range strings.Split(src, "\n") {
		switch {
		case cur == nil && start.MatchString(line):
			cur = []string{line[2:]}
		case cur != nil && line == "# }":
			blocks = append(blocks, strings.Join(append(cur, "}"), "\n"))
			cur = nil
		case cur != nil:
			cur = append(cur, strings.TrimPrefix(strings.TrimPrefix(line, "#"), " "))
		}
	}
	return blocks
}

// Kind returns the block type of a block Uncomment returned.
func Kind(block string) string {
	m := start.FindStringSubmatch("# " + strings.SplitN(block, "\n", 2)[0])
	if m == nil {
		return ""
	}
	return m[1]
}
