package fleet

import (
	"context"
	"fmt"
	"sync"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/attestors/jointoken"
)

// Layout is what Provision created: one join token per agent, each
// agent's own entries, and the shared entries every agent gets through a
// node alias.
type Layout struct {
	Tokens []string
	// Own[i] holds agent i's entries (as created, revision included).
	Own [][]*apiv1.Entry
	// Shared holds the entries parented by the node alias.
	Shared []*apiv1.Entry
	// Alias is the node alias SPIFFE ID every agent is mapped to (one node
	// entry per agent, selecting its join token).
	Alias spiffeid.ID
}

// Entries returns the number of entries created.
func (l *Layout) Entries() int {
	n := len(l.Shared) + len(l.Tokens) // the node entries
	for _, own := range l.Own {
		n += len(own)
	}
	return n
}

// Provision creates, through the admin API, n join tokens, perAgent
// entries parented by each token's agent ID, one node entry per agent
// mapping it to a shared node alias, and shared entries parented by that
// alias.
func Provision(ctx context.Context, admin apiv1.AdminClient, td spiffeid.TrustDomain, n, perAgent, shared int) (*Layout, error) {
	l := &Layout{Tokens: make([]string, n), Own: make([][]*apiv1.Entry, n),
		Alias: spiffeid.RequireFromSegments(td, "fleet", "nodes")}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		next     = make(chan int)
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				resp, err := admin.GenerateJoinToken(ctx, &apiv1.GenerateJoinTokenRequest{TtlSeconds: 4 * 3600})
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("fleet: join token: %w", err)
				}
				l.Tokens[i] = resp.GetToken()
				mu.Unlock()
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}

	serverID := spiffeid.RequireFromSegments(td, "hallmark", "server").String()
	var batch []*apiv1.Entry
	var place []func(*apiv1.Entry)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		resp, err := admin.CreateEntries(ctx, &apiv1.CreateEntriesRequest{Entries: batch})
		if err != nil {
			return fmt.Errorf("fleet: create entries: %w", err)
		}
		for i, r := range resp.GetResults() {
			if r.GetError() != "" {
				return fmt.Errorf("fleet: create entry %s: %s", batch[i].GetSpiffeId(), r.GetError())
			}
			place[i](r.GetEntry())
		}
		batch, place = batch[:0], place[:0]
		return nil
	}
	add := func(e *apiv1.Entry, p func(*apiv1.Entry)) error {
		batch, place = append(batch, e), append(place, p)
		if len(batch) == 5000 {
			return flush()
		}
		return nil
	}
	for k := range shared {
		e := &apiv1.Entry{SpiffeId: fmt.Sprintf("spiffe://%s/fleet/shared/%d", td.Name(), k), ParentId: l.Alias.String(),
			Selectors: []*apiv1.Selector{{Type: "unix", Value: fmt.Sprintf("uid:%d", 50000+k)}}}
		if err := add(e, func(e *apiv1.Entry) { l.Shared = append(l.Shared, e) }); err != nil {
			return nil, err
		}
	}
	for i, tok := range l.Tokens {
		agentID, err := jointoken.AgentID(td, tok)
		if err != nil {
			return nil, err
		}
		node := &apiv1.Entry{SpiffeId: l.Alias.String(), ParentId: serverID,
			Selectors: []*apiv1.Selector{{Type: jointoken.Type, Value: tok}}}
		if err := add(node, func(*apiv1.Entry) {}); err != nil {
			return nil, err
		}
		for j := range perAgent {
			e := &apiv1.Entry{SpiffeId: fmt.Sprintf("spiffe://%s/fleet/a%d/w%d", td.Name(), i, j), ParentId: agentID.String(),
				Selectors: []*apiv1.Selector{{Type: "unix", Value: fmt.Sprintf("uid:%d", 10000+j)}}}
			if err := add(e, func(e *apiv1.Entry) { l.Own[i] = append(l.Own[i], e) }); err != nil {
				return nil, err
			}
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return l, nil
}
