package nodeapi_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

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

// The SVID a batch returns is the certificate the CA made, sent without
// being parsed back: it verifies as the entry's X.509-SVID for the CSR's
// key, with the entry's DNS names and TTL, and the answer's expiry and the
// audit record's serial and expiry are the certificate's.
func TestBatchSignServesWhatItAudits(t *testing.T) {
	audit := &auditLog{}
	e := nodeapitest.New(t, func(c *nodeapi.Config) { c.Audit = audit })
	ag := e.NewAgent("a1")
	entry := nodeapitest.Entry(ag, "w1")
	entry.DNSNames = []string{"web.example.org", "*.web.example.org"}
	entry.X509SVIDTTL = 10 * time.Minute
	e.Put(entry)
	key, csr, err := manager.NewKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := agentClient(t, e, ag).BatchSign(ctx, []*apiv1.SVIDRequest{{EntryId: "w1", Csr: csr}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].GetError() != "" {
		t.Fatalf("results %v", res)
	}
	svid := res[0].GetSvid()
	var chain []*x509.Certificate
	for _, der := range svid.GetCertChain() {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
	}
	id, _, err := x509svid.Verify(chain, x509bundle.FromX509Authorities(nodeapitest.TrustDomain, e.CA.Bundle()))
	if err != nil {
		t.Fatal(err)
	}
	leaf := chain[0]
	switch {
	case id != entry.SPIFFEID || svid.GetSpiffeId() != entry.SPIFFEID.String():
		t.Fatalf("SVID for %s (%s), want %s", id, svid.GetSpiffeId(), entry.SPIFFEID)
	case !key.Public().(*ecdsa.PublicKey).Equal(leaf.PublicKey):
		t.Fatal("leaf does not certify the CSR's key")
	case len(leaf.DNSNames) != 2 || leaf.DNSNames[1] != "*.web.example.org" || leaf.Subject.CommonName != "web.example.org":
		t.Fatalf("DNS names %q, CN %q", leaf.DNSNames, leaf.Subject.CommonName)
	case svid.GetExpiresAt() != leaf.NotAfter.Unix():
		t.Fatalf("expires_at %d, certificate %d", svid.GetExpiresAt(), leaf.NotAfter.Unix())
	case leaf.NotAfter.Sub(leaf.NotBefore) != entry.X509SVIDTTL+10*time.Second:
		t.Fatalf("validity %s", leaf.NotAfter.Sub(leaf.NotBefore))
	}
	audit.mu.Lock()
	defer audit.mu.Unlock()
	var found bool
	for _, r := range audit.recs {
		if r["kind"] != "issuance" {
			continue
		}
		found = true
		if r["serial"] != leaf.SerialNumber.String() || r["expires_at"] != leaf.NotAfter.UTC().Format(time.RFC3339) ||
			r["spiffe_id"] != entry.SPIFFEID.String() || r["entry_id"] != "w1" {
			t.Fatalf("audit record %v for serial %s expiring %s", r, leaf.SerialNumber, leaf.NotAfter)
		}
	}
	if !found {
		t.Fatal("no issuance audit record")
	}
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}

// BenchmarkBatchSign is one agent's batch of 23 workload SVIDs (the fleet
// benchmark's 20 own + 3 shared entries) over the real mTLS gRPC
// connection, CSRs made beforehand: the server's per-SVID path (CSR check,
// signing, protobuf, audit) plus the client's side of the call. Profile
// with -cpuprofile / -memprofile.
func BenchmarkBatchSign(b *testing.B) {
	e := nodeapitest.New(b)
	ag := e.NewAgent("a1")
	var reqs []*apiv1.SVIDRequest
	for i := range 23 {
		id := fmt.Sprintf("w%d", i)
		e.Put(nodeapitest.Entry(ag, id))
		_, csr, err := manager.NewKeyAndCSR()
		if err != nil {
			b.Fatal(err)
		}
		reqs = append(reqs, &apiv1.SVIDRequest{EntryId: id, Csr: csr})
	}
	c := agentClient(b, e, ag)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		res, err := c.BatchSign(ctx, reqs)
		if err != nil {
			b.Fatal(err)
		}
		if res[0].GetError() != "" {
			b.Fatal(res[0].GetError())
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(reqs)), "ns/SVID")
}
