package k8s

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hallmarkid/hallmark/attestors"
	"github.com/hallmarkid/hallmark/registration"
)

// Attestor is the "k8s" workload attestor. It is safe for concurrent use.
type Attestor struct {
	s    *settings
	pods *podSource
}

var _ attestors.WorkloadAttestor = (*Attestor)(nil)

// New validates c and returns an attestor. It does not contact the kubelet.
func New(c Config) (*Attestor, error) {
	s, err := c.settings()
	if err != nil {
		return nil, err
	}
	return &Attestor{s: s, pods: &podSource{s: s}}, nil
}

// Name returns "k8s".
func (a *Attestor) Name() string { return SelectorType }

// KubeletRequests returns how many /pods requests the attestor has made.
func (a *Attestor) KubeletRequests() uint64 { return a.pods.requests.Load() }

// Attest returns the k8s selectors of the pod container that pid runs in,
// or none if pid is not in a pod. A container that the kubelet does not
// list after MaxPollAttempts fresh answers, or a kubelet that keeps
// failing, is an error.
func (a *Attestor) Attest(ctx context.Context, pid int32) ([]registration.Selector, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("k8s: invalid pid %d", pid)
	}
	data, err := readLimited(filepath.Join(a.s.procDir, strconv.Itoa(int(pid)), "cgroup"), MaxCgroupFileSize)
	if err != nil {
		return nil, fmt.Errorf("k8s: pid %d: %w", pid, err)
	}
	c, found, err := ParseCgroupFile(data, a.s.cgroupRoot)
	if err != nil {
		return nil, fmt.Errorf("%w (pid %d)", err, pid)
	}
	if !found {
		return nil, nil
	}

	start := time.Now()
	notBefore := start.Add(-a.s.cacheTTL)
	var lastErr error
	for attempt := 0; ; attempt++ {
		idx, err := a.pods.get(ctx, notBefore)
		if err == nil {
			if podUID, values, ok := idx.Lookup(c.ID); ok {
				if c.PodUID != "" && podUID != c.PodUID {
					return nil, fmt.Errorf("k8s: pid %d: container %s belongs to pod %s, but its cgroup names pod %s",
						pid, c.ID, podUID, c.PodUID)
				}
				return toSelectors(values), nil
			}
			lastErr = fmt.Errorf("k8s: pid %d: container %s (pod %q) not listed by the kubelet", pid, c.ID, c.PodUID)
		} else {
			if ctx.Err() != nil {
				return nil, err
			}
			lastErr = err
			a.s.log.Warn("k8s: kubelet pod list", "err", err, "attempt", attempt+1)
		}
		if attempt >= a.s.maxAttempts {
			return nil, fmt.Errorf("%w after %d attempts", lastErr, attempt+1)
		}
		// A list fetched before this attestation began may just predate
		// the pod: refetch at once. Otherwise wait before asking again.
		if err != nil || !idx.fetched.Before(start) {
			t := time.NewTimer(a.s.retryInterval)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, fmt.Errorf("k8s: pid %d: waiting for the kubelet to list container %s: %w", pid, c.ID, ctx.Err())
			}
		}
		notBefore = time.Now()
	}
}

func toSelectors(values []string) []registration.Selector {
	out := make([]registration.Selector, len(values))
	for i, v := range values {
		out[i] = registration.Selector{Type: SelectorType, Value: v}
	}
	return out
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, errors.New("cgroup file too large")
	}
	return data, nil
}

// Fingerprint returns the contents of /proc/<pid>/cgroup: the process's
// pod container is all the selectors depend on besides the kubelet's pod
// list, and a process can be moved to another cgroup without an exec or a
// change of credentials. agent/workloadattest reuses a connection's
// attestation while it is unchanged, for at most ReuseFor.
func (a *Attestor) Fingerprint(_ context.Context, pid int32) (string, error) {
	if pid <= 0 {
		return "", fmt.Errorf("k8s: invalid pid %d", pid)
	}
	data, err := readLimited(filepath.Join(a.s.procDir, strconv.Itoa(int(pid)), "cgroup"), MaxCgroupFileSize)
	if err != nil {
		return "", fmt.Errorf("k8s: pid %d: %w", pid, err)
	}
	return string(data), nil
}

// ReuseFor is the pod list cache TTL (pod_list_cache_ttl): a reused
// attestation is then at most twice that old, as a pod's labels can
// change while its containers run.
func (a *Attestor) ReuseFor() time.Duration { return a.s.cacheTTL }
