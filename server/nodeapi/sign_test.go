package nodeapi_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/agent/manager"
	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/server/nodeapi"
	"github.com/hallmarkid/hallmark/server/nodeapi/nodeapitest"
)

// With one signing slot, many agents' batches signed at once all succeed
// (in turn), and a batch whose entries are all refused gives its slot
// back like any other.
func TestBatchSignTakesTurns(t *testing.T) {
	e := nodeapitest.New(t, func(c *nodeapi.Config) { c.SigningConcurrency = 1 })
	const agents, perAgent = 8, 5
	var wg sync.WaitGroup
	errs := make(chan string, agents*perAgent+agents)
	for i := range agents {
		ag := e.NewAgent(fmt.Sprintf("a%d", i))
		var reqs []*apiv1.SVIDRequest
		for j := range perAgent {
			id := fmt.Sprintf("w%d-%d", i, j)
			e.Put(nodeapitest.Entry(ag, id))
			_, csr, err := manager.NewKeyAndCSR()
			if err != nil {
				t.Fatal(err)
			}
			reqs = append(reqs, &apiv1.SVIDRequest{EntryId: id, Csr: csr})
		}
		c := agentClient(t, e, ag)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			// Refused entirely first: not authorised.
			res, err := c.BatchSign(ctx, []*apiv1.SVIDRequest{{EntryId: "someone-elses", Csr: reqs[0].Csr}})
			if err != nil || res[0].GetError() == "" {
				errs <- "refused batch: " + errString(err)
				return
			}
			res, err = c.BatchSign(ctx, reqs)
			if err != nil {
				errs <- err.Error()
				return
			}
			for _, r := range res {
				if r.GetError() != "" || r.GetSvid() == nil {
					errs <- r.GetEntryId() + ": " + r.GetError()
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}
