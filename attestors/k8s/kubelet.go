package k8s

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// podSource fetches the kubelet's pod list with at most one request in
// flight, and keeps the last answer.
type podSource struct {
	s        *settings
	requests atomic.Uint64

	// mu guards the fields that follow.
	mu       sync.Mutex
	last     *PodIndex // nil until the first successful fetch
	inflight *fetchCall
}

type fetchCall struct {
	started time.Time
	done    chan struct{}
	idx     *PodIndex
	err     error
}

// get returns a pod index whose fetch started at or after notBefore,
// joining the request in flight if it qualifies, else waiting for it and
// starting the next. At most one kubelet request is ever in flight.
func (p *podSource) get(ctx context.Context, notBefore time.Time) (*PodIndex, error) {
	for {
		p.mu.Lock()
		if p.last != nil && !p.last.fetched.Before(notBefore) {
			idx := p.last
			p.mu.Unlock()
			return idx, nil
		}
		call := p.inflight
		fresh := call != nil && !call.started.Before(notBefore)
		if call == nil {
			call = &fetchCall{started: time.Now(), done: make(chan struct{})}
			p.inflight = call
			fresh = true
			go p.run(call)
		}
		p.mu.Unlock()

		select {
		case <-call.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("k8s: waiting for kubelet: %w", ctx.Err())
		}
		if fresh {
			return call.idx, call.err
		}
		// The call we waited for started too early; loop to start the next.
	}
}

func (p *podSource) run(call *fetchCall) {
	// The request is shared, so it does not run under any caller's context.
	ctx, cancel := context.WithTimeout(context.Background(), p.s.timeout)
	defer cancel()
	call.idx, call.err = p.fetch(ctx, call.started)
	p.mu.Lock()
	p.inflight = nil
	if call.err == nil && (p.last == nil || call.idx.fetched.After(p.last.fetched)) {
		p.last = call.idx
	}
	p.mu.Unlock()
	close(call.done)
}

func (p *podSource) fetch(ctx context.Context, started time.Time) (*PodIndex, error) {
	p.requests.Add(1)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.s.podsURL, nil)
	if err != nil {
		return nil, fmt.Errorf("k8s: kubelet request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if p.s.tokenPath != "" {
		tok, err := os.ReadFile(p.s.tokenPath)
		if err != nil {
			return nil, fmt.Errorf("k8s: kubelet token: %w", err)
		}
		tok = bytes.TrimSpace(tok)
		if len(tok) == 0 {
			return nil, fmt.Errorf("k8s: kubelet token %s is empty", p.s.tokenPath)
		}
		req.Header.Set("Authorization", "Bearer "+string(tok))
	}
	resp, err := p.s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("k8s: kubelet: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("k8s: kubelet: GET /pods: %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxPodListSize+1))
	if err != nil {
		return nil, fmt.Errorf("k8s: kubelet: reading /pods: %w", err)
	}
	if len(body) > MaxPodListSize {
		return nil, fmt.Errorf("k8s: kubelet: /pods answer larger than %d bytes", MaxPodListSize)
	}
	idx, err := ParsePodList(body)
	if err != nil {
		return nil, err
	}
	idx.fetched = started
	p.s.log.Debug("k8s: fetched pod list", "pods", idx.pods, "containers", len(idx.byContainer))
	return idx, nil
}

// PodIndex maps container IDs to the selectors of their container, built
// once per kubelet answer.
type PodIndex struct {
	fetched     time.Time
	pods        int
	byContainer map[string]indexedContainer
}

type indexedContainer struct {
	podUID    string
	selectors []string // "ns:default", ... sorted, without the "k8s:" type
}

// ParsePodList parses a kubelet /pods answer (a v1 PodList) and indexes
// every container, init container and ephemeral container that has a
// container ID. Containers without an ID (not started yet) are left out.
func ParsePodList(data []byte) (*PodIndex, error) {
	var list podList
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("k8s: parse pod list: %w", err)
	}
	idx := &PodIndex{pods: len(list.Items), byContainer: make(map[string]indexedContainer)}
	for i := range list.Items {
		pod := &list.Items[i]
		common := podSelectors(pod)
		for _, group := range [][]containerStatus{
			pod.Status.ContainerStatuses, pod.Status.InitContainerStatuses, pod.Status.EphemeralContainerStatuses,
		} {
			for j := range group {
				st := &group[j]
				id, ok := parseContainerID(st.ContainerID)
				if !ok {
					continue
				}
				if prev, dup := idx.byContainer[id]; dup && prev.podUID != pod.Metadata.UID {
					// One ID in two pods: believe neither.
					idx.byContainer[id] = indexedContainer{podUID: "\x00conflict"}
					continue
				}
				idx.byContainer[id] = indexedContainer{
					podUID:    pod.Metadata.UID,
					selectors: containerSelectors(common, st),
				}
			}
		}
	}
	return idx, nil
}

// Lookup returns the selector values ("ns:default", ...) of the container
// with the given ID and the UID of its pod.
func (x *PodIndex) Lookup(containerID string) (podUID string, values []string, ok bool) {
	c, ok := x.byContainer[containerID]
	if !ok || c.selectors == nil {
		return "", nil, false
	}
	return c.podUID, c.selectors, true
}

// parseContainerID takes "<runtime>://<id>" apart.
func parseContainerID(s string) (string, bool) {
	for i := 0; i+3 <= len(s); i++ {
		if s[i:i+3] == "://" {
			id := s[i+3:]
			return id, id != ""
		}
	}
	return "", false
}
