package client_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/big"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/hallmarkid/hallmark/agent/client"
	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/attestors/jointoken"
	"github.com/hallmarkid/hallmark/internal/busy"
)

// testPKI is a CA with a server SVID and an agent SVID under it.
type testPKI struct {
	ca     *x509.Certificate
	server tls.Certificate
	agent  *x509svid.SVID
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, URIs: []*url.URL{td.ID().URL()}}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, path string) (*x509.Certificate, crypto.Signer) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, URIs: []*url.URL{spiffeid.RequireFromPath(td, path).URL()},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c, key
	}
	srv, srvKey := leaf(2, "/hallmark/server")
	ag, agKey := leaf(3, "/agent/join_token/test")
	return &testPKI{
		ca:     ca,
		server: tls.Certificate{Certificate: [][]byte{srv.Raw}, PrivateKey: srvKey, Leaf: srv},
		agent:  &x509svid.SVID{ID: spiffeid.RequireFromPath(td, "/agent/join_token/test"), Certificates: []*x509.Certificate{ag}, PrivateKey: agKey},
	}
}

// syncServer answers every Sync with an empty snapshot and holds it.
type syncServer struct {
	apiv1.UnimplementedNodeServer
}

func (syncServer) Sync(_ *apiv1.SyncRequest, stream grpc.ServerStreamingServer[apiv1.SyncResponse]) error {
	if err := stream.Send(&apiv1.SyncResponse{Full: true, Revision: 1}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

// serveNode serves syncServer over mTLS on l until the test ends.
func serveNode(t *testing.T, p *testPKI, l net.Listener) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(p.ca)
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{p.server}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: roots, MinVersion: tls.VersionTLS13,
	})))
	apiv1.RegisterNodeServer(srv, syncServer{})
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
}

func newClient(t *testing.T, p *testPKI, addr string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Address: addr, TrustDomain: td, Bundle: []*x509.Certificate{p.ca}})
	if err != nil {
		t.Fatal(err)
	}
	c.SetSVID(p.agent)
	t.Cleanup(func() { c.Close() })
	return c
}

// freeAddr returns a loopback address nothing listens on (it did a
// moment ago).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func syncFirst(ctx context.Context, c *client.Client) error {
	stream, err := c.Sync(ctx, nil)
	if err != nil {
		return err
	}
	_, err = stream.Recv()
	return err
}

// TestCallAfterFailedConnectTriesAgainAtOnce: after a connection attempt
// failed (the server down, as during its restart), the next call makes a
// new attempt and finds the server that is back, instead of failing at
// once until gRPC's own retry (1 s after the failure, the same second for
// every agent, then longer and longer) — so the agent's reconnect backoff
// alone paces its attempts.
func TestCallAfterFailedConnectTriesAgainAtOnce(t *testing.T) {
	p := newTestPKI(t)
	addr := freeAddr(t)
	c := newClient(t, p, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for i := range 2 {
		err := syncFirst(ctx, c)
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("attempt %d with no server: %v, want Unavailable", i, err)
		}
		var be *client.BusyError
		if errors.As(err, &be) || !errors.Is(err, client.ErrNotListening) {
			t.Fatalf("attempt %d: %v, want ErrNotListening (and not busy)", i, err)
		}
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	serveNode(t, p, l)
	if err := syncFirst(ctx, c); err != nil {
		t.Fatalf("first call once the server is back: %v", err)
	}
}

// busyServer answers every connection with a busy refusal (as the
// server's admission gate does past its connection limits) and closes it.
func busyServer(t *testing.T, window time.Duration) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	refusal := busy.Refusal(window)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write(refusal[:])
			c.Close()
		}
	}()
	return l.Addr().String()
}

// TestBusyRefusalIsReported: a connection the server refuses at its
// limits is reported as a *BusyError with the server's retry window, both
// on the agent's mTLS channel and when attesting, and keeps the gRPC
// status Unavailable.
func TestBusyRefusalIsReported(t *testing.T) {
	p := newTestPKI(t)
	addr := busyServer(t, 1500*time.Millisecond)
	c := newClient(t, p, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	check := func(what string, err error) {
		t.Helper()
		var be *client.BusyError
		if !errors.As(err, &be) || be.RetryWithin != 1500*time.Millisecond {
			t.Fatalf("%s: %v, want a BusyError asking for a retry within 1.5s", what, err)
		}
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("%s: code %v, want Unavailable", what, status.Code(err))
		}
	}
	check("sync", syncFirst(ctx, c))
	_, err := c.BatchSign(ctx, []*apiv1.SVIDRequest{{EntryId: "e"}})
	check("batch sign", err)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, err = c.Attest(ctx, jointoken.NewCollector("token"), key, []byte("csr"))
	check("attest", err)
}
