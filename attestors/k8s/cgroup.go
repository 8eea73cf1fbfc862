package k8s

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// MaxCgroupFileSize bounds how much of /proc/<pid>/cgroup is read; real
// files are a few hundred bytes to a few KiB.
const MaxCgroupFileSize = 64 << 10

// Container names a pod container as the kernel places a process in it.
type Container struct {
	// PodUID is the pod's UID with dashes ("2c48913c-b29f-11e7-..."). It is
	// empty when the path does not name the pod: a cgroup-namespace relative
	// path to a container beside the agent's own ("/../crio-<id>.scope").
	PodUID string
	// ID is the container ID, 64 lowercase hex digits.
	ID string
}

// ParseCgroupFile extracts the pod container of a process from the contents
// of its /proc/<pid>/cgroup. It handles cgroup v1 and v2, the cgroupfs and
// systemd drivers, containerd, CRI-O and Docker, kind's nesting inside a
// Docker container and cgroup-namespace relative paths.
//
// found is false, with no error, for a process that is not in a pod.
//
// A path is only believed when it is anchored where kubelet puts pods:
// "kubepods" (or "kubepods.slice") must be the first segment, after
// cgroupRoot if that is set ("/" or "" for none), else optionally after one
// Docker container ("/docker/<id>/" or "/system.slice/docker-<id>.scope/",
// which only root can create); or, for a relative path, the segments after
// the leading ".." must all belong to kubelet's hierarchy. A pod-shaped path
// anywhere else (such as inside a systemd user delegation, where an
// unprivileged user may create any directory) is an error. Lines that
// disagree about the container are an error.
func ParseCgroupFile(data []byte, cgroupRoot string) (c Container, found bool, err error) {
	if len(data) > MaxCgroupFileSize {
		return Container{}, false, fmt.Errorf("k8s: cgroup file larger than %d bytes", MaxCgroupFileSize)
	}
	root, err := rootSegments(cgroupRoot)
	if err != nil {
		return Container{}, false, err
	}
	seen := make(map[string]bool)
	lines := strings.Split(string(data), "\n")
	for i, line := range lines {
		if line == "" && i == len(lines)-1 {
			break
		}
		id, rest, ok1 := strings.Cut(line, ":")
		_, p, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 || !isDecimal(id) || !strings.HasPrefix(p, "/") {
			return Container{}, false, fmt.Errorf("k8s: cgroup line %d: malformed %q", i+1, truncate(line))
		}
		if seen[id] {
			return Container{}, false, fmt.Errorf("k8s: cgroup line %d: hierarchy %s listed twice", i+1, id)
		}
		seen[id] = true
		lc, ok, err := parseCgroupPath(p, root)
		if err != nil {
			return Container{}, false, fmt.Errorf("k8s: cgroup line %d: %w", i+1, err)
		}
		if !ok {
			continue
		}
		if !found {
			c, found = lc, true
			continue
		}
		if lc.ID != c.ID {
			return Container{}, false, fmt.Errorf("k8s: cgroup line %d: container %s disagrees with %s", i+1, lc.ID, c.ID)
		}
		switch {
		case lc.PodUID == "" || lc.PodUID == c.PodUID:
		case c.PodUID == "":
			c.PodUID = lc.PodUID
		default:
			return Container{}, false, fmt.Errorf("k8s: cgroup line %d: pod %s disagrees with %s", i+1, lc.PodUID, c.PodUID)
		}
	}
	return c, found, nil
}

var errNotAnchored = errors.New("pod cgroup is not under kubelet's hierarchy (is cgroup_root set?)")

// parseCgroupPath looks at one cgroup path.
func parseCgroupPath(p string, root []string) (Container, bool, error) {
	segs := strings.Split(p[1:], "/")
	n := len(segs)
	cid, ok := containerID(segs[n-1])
	if !ok {
		return Container{}, false, nil
	}
	if n >= 2 {
		if uid, ok := podSegment(segs[n-2]); ok {
			if !anchored(segs[:n-2], root) {
				return Container{}, false, fmt.Errorf("%s: %w", truncate(p), errNotAnchored)
			}
			return Container{PodUID: uid, ID: cid}, true, nil
		}
	}
	// No pod segment: only a sibling of the agent's own cgroup-namespace
	// root ("/../<container>") names a pod container; anything else (a
	// plain Docker container, say) is not in a pod.
	prefix := segs[:n-1]
	if len(prefix) == 0 {
		return Container{}, false, nil
	}
	for _, s := range prefix {
		if s != ".." {
			return Container{}, false, nil
		}
	}
	return Container{ID: cid}, true, nil
}

func anchored(prefix, root []string) bool {
	if len(prefix) > 0 && prefix[0] == ".." {
		i := 0
		for i < len(prefix) && prefix[i] == ".." {
			i++
		}
		return allKubepods(prefix[i:])
	}
	if len(root) > 0 {
		if len(prefix) < len(root) {
			return false
		}
		for i := range root {
			if prefix[i] != root[i] {
				return false
			}
		}
		prefix = prefix[len(root):]
	} else {
		prefix = trimDockerNesting(prefix)
	}
	if len(prefix) == 0 || !(prefix[0] == "kubepods" || strings.HasSuffix(prefix[0], "kubepods.slice")) {
		return false
	}
	return allKubepods(prefix)
}

// trimDockerNesting removes a leading Docker container (kind nodes).
func trimDockerNesting(segs []string) []string {
	if len(segs) >= 2 && segs[0] == "docker" && isHex64(segs[1]) {
		return segs[2:]
	}
	if len(segs) >= 2 && segs[0] == "system.slice" && strings.HasPrefix(segs[1], "docker-") &&
		strings.HasSuffix(segs[1], ".scope") && isHex64(strings.TrimSuffix(strings.TrimPrefix(segs[1], "docker-"), ".scope")) {
		return segs[2:]
	}
	return segs
}

// allKubepods reports whether every segment is one of kubelet's QoS or
// root cgroups (not a pod).
func allKubepods(segs []string) bool {
	for _, s := range segs {
		switch {
		case s == "kubepods" || s == "besteffort" || s == "burstable":
		case strings.HasSuffix(s, ".slice") && strings.Contains(s, "kubepods"):
			if _, isPod := podSegment(s); isPod {
				return false
			}
		default:
			return false
		}
	}
	return true
}

var runtimeScopePrefixes = []string{"cri-containerd-", "crio-", "docker-"}

// containerID recognises "<id>", "cri-containerd-<id>.scope",
// "crio-<id>.scope" and "docker-<id>.scope". CRI-O's "crio-conmon-<id>.scope"
// holds the monitor, not the container, and is not recognised.
func containerID(seg string) (string, bool) {
	if s, ok := strings.CutSuffix(seg, ".scope"); ok {
		for _, p := range runtimeScopePrefixes {
			if id, ok := strings.CutPrefix(s, p); ok && isHex64(id) {
				return id, true
			}
		}
		return "", false
	}
	if isHex64(seg) {
		return seg, true
	}
	return "", false
}

// podSegment recognises cgroupfs "pod<uid>" and systemd
// "[<root>-]kubepods[-<qos>]-pod<uid>.slice", where the UID has '_' for
// '-' (systemd's escaping; older setups kept the dashes).
func podSegment(seg string) (string, bool) {
	if uid, ok := strings.CutPrefix(seg, "pod"); ok {
		return uid, validUID(uid)
	}
	name, ok := strings.CutSuffix(seg, ".slice")
	if !ok {
		return "", false
	}
	i := strings.LastIndex(name, "-pod")
	if i < 0 {
		return "", false
	}
	head, escaped := name[:i], name[i+len("-pod"):]
	if !(strings.HasSuffix(head, "kubepods") || strings.HasSuffix(head, "kubepods-besteffort") ||
		strings.HasSuffix(head, "kubepods-burstable")) {
		return "", false
	}
	uid := strings.ReplaceAll(escaped, "_", "-")
	return uid, validUID(uid)
}

// validUID accepts a lowercase UUID or, for static pods, 32 lowercase hex
// digits (kubelet's hash of the manifest).
func validUID(s string) bool {
	switch len(s) {
	case 32:
		return isHex(s)
	case 36:
		for i := 0; i < len(s); i++ {
			if i == 8 || i == 13 || i == 18 || i == 23 {
				if s[i] != '-' {
					return false
				}
			} else if !isHexByte(s[i]) {
				return false
			}
		}
		return true
	}
	return false
}

func rootSegments(root string) ([]string, error) {
	if root == "" || root == "/" {
		return nil, nil
	}
	if !strings.HasPrefix(root, "/") || path.Clean(root) != strings.TrimSuffix(root, "/") {
		return nil, fmt.Errorf("k8s: cgroup root %q must be a clean absolute path", root)
	}
	return strings.Split(strings.Trim(root, "/"), "/"), nil
}

func isHex64(s string) bool { return len(s) == 64 && isHex(s) }

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isHexByte(s[i]) {
			return false
		}
	}
	return s != ""
}

func isHexByte(b byte) bool { return b >= '0' && b <= '9' || b >= 'a' && b <= 'f' }

func isDecimal(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != "" && len(s) <= 10
}

func truncate(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}
