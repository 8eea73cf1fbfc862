package test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/hallmarkid/hallmark/agent/client"
	"github.com/hallmarkid/hallmark/agent/manager"
	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/attestors/jointoken"
	"github.com/hallmarkid/hallmark/test/testenv"
)

var td = spiffeid.RequireTrustDomainFromString(testenv.TrustDomain)

// nodeClient returns a Node API client that trusts srv's bundle.
func nodeClient(t *testing.T, srv *testenv.Server) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Address: srv.Address, TrustDomain: td, InsecureBootstrap: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func attestWithToken(ctx context.Context, c *client.Client, token string) (*client.AttestResult, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, nil, err
	}
	res, err := c.Attest(ctx, jointoken.NewCollector(token), key, csr)
	return res, key, err
}

func TestJoinTokenConcurrentUseExactlyOneWins(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer(manyAttestations)
	tok := srv.Token()
	c := nodeClient(t, srv)

	var wins, denied atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, _, err := attestWithToken(ctx, c, tok)
			switch {
			case err == nil:
				wins.Add(1)
			case strings.Contains(err.Error(), "invalid or expired join token"):
				denied.Add(1)
			default:
				t.Errorf("unexpected error: %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if wins.Load() != 1 || denied.Load() != 99 {
		t.Fatalf("wins=%d denied=%d, want exactly 1 and 99", wins.Load(), denied.Load())
	}
}

func TestExpiredAndUnknownTokensGiveTheSameError(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer()
	expired := srv.Token("-ttl", "1")
	c := nodeClient(t, srv)
	time.Sleep(1100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, errExpired := attestWithToken(ctx, c, expired)
	_, _, errUnknown := attestWithToken(ctx, c, "0123456789abcdef0123456789abcdef")
	if errExpired == nil || errUnknown == nil {
		t.Fatalf("expired: %v, unknown: %v; want both rejected", errExpired, errUnknown)
	}
	se, su := status.Convert(unwrapAll(errExpired)), status.Convert(unwrapAll(errUnknown))
	if se.Code() != codes.PermissionDenied || se.Code() != su.Code() || se.Message() != su.Message() {
		t.Fatalf("expired → %v %q, unknown → %v %q; want the same", se.Code(), se.Message(), su.Code(), su.Message())
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok || u.Unwrap() == nil {
			return err
		}
		err = u.Unwrap()
	}
}

// An attested agent asks for SVIDs with CSRs that request other
// identities: the server signs only the entry's SPIFFE ID, and refuses
// entries not authorised for the agent.
func TestServerSignsOnlyAuthorisedIDs(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer()
	tok := srv.Token()
	c := nodeClient(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// A CSR for the agent asking to be the server.
	res, key, err := attestWithToken(ctx, c, tok)
	if err != nil {
		t.Fatal(err)
	}
	agentID := "spiffe://example.org/agent/join_token/" + tok
	if got := res.Certs[0].URIs[0].String(); got != agentID {
		t.Fatalf("agent SVID = %s, want %s", got, agentID)
	}
	c.SetBundle(res.Bundle)
	c.SetSVID(&x509svid.SVID{ID: spiffeid.RequireFromString(agentID), Certificates: res.Certs, PrivateKey: key})

	mine := srv.CreateEntry("spiffe://example.org/mine", agentID, "-selector", "unix:uid:1")
	other := srv.CreateEntry("spiffe://example.org/not-mine", "spiffe://example.org/agent/join_token/someone-else", "-selector", "unix:uid:1")

	evilKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	evil, _ := url.Parse("spiffe://example.org/admin")
	evilCSR, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		URIs: []*url.URL{evil}, DNSNames: []string{"evil.example.com"},
	}, evilKey)
	if err != nil {
		t.Fatal(err)
	}
	_, plainCSR, _ := manager.NewKeyAndCSR()
	results, err := c.BatchSign(ctx, []*apiv1.SVIDRequest{
		{EntryId: mine, Csr: evilCSR},
		{EntryId: other, Csr: plainCSR},
		{EntryId: mine, Csr: []byte("not a CSR")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if results[0].GetError() != "" {
		t.Fatalf("authorised entry refused: %s", results[0].GetError())
	}
	leaf, err := x509.ParseCertificate(results[0].GetSvid().GetCertChain()[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://example.org/mine" || len(leaf.DNSNames) != 0 {
		t.Fatalf("signed URIs=%v DNS=%v; want only spiffe://example.org/mine", leaf.URIs, leaf.DNSNames)
	}
	if !strings.Contains(results[1].GetError(), "not authorised") {
		t.Fatalf("entry of another agent: error %q, want not authorised", results[1].GetError())
	}
	if results[2].GetError() == "" {
		t.Fatal("a malformed CSR was signed")
	}

	// After eviction the same SVID can no longer get anything signed.
	srv.MustCLI("agent", "evict", "-spiffeID", agentID)
	_, err = c.BatchSign(ctx, []*apiv1.SVIDRequest{{EntryId: mine, Csr: plainCSR}})
	if status.Code(unwrapAll(err)) != codes.PermissionDenied {
		t.Fatalf("evicted agent BatchSign: %v, want PermissionDenied", err)
	}
}

func TestWorkloadAPIRequiresSecurityHeader(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer()
	ag := env.StartAgent(srv, srv.Token())
	srv.CreateEntry("spiffe://example.org/w", ag.ID(), "-selector", uidSelector())

	conn, err := grpc.NewClient(ag.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := workload.NewSpiffeWorkloadAPIClient(conn).FetchX509SVID(ctx, &workload.X509SVIDRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "security header") {
		t.Fatalf("without the security header: %v, want InvalidArgument", err)
	}
}
