// Package nodeapitest runs a real Node API server in-process for tests of
// the server and of the agent packages that talk to it: a real CA, a
// SQLite agent store in a temporary directory, an entry cache the test
// fills directly, mTLS gRPC over a unix socket, and counters of what the
// server was asked to sign and what it sent first on each Sync stream.
//
// Only tests import it. It may import server packages and datastore
// backends; it must not import agent packages.
package nodeapitest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/ca"
	"github.com/hallmarkid/hallmark/server/datastore"
	"github.com/hallmarkid/hallmark/server/datastore/sqlite"
	"github.com/hallmarkid/hallmark/server/entrycache"
	"github.com/hallmarkid/hallmark/server/nodeapi"
)

// TrustDomain is the trust domain of every Env.
var TrustDomain = spiffeid.RequireTrustDomainFromString("example.org")

// Env is a running Node API server.
type Env struct {
	tb      testing.TB
	CA      *ca.CA
	Store   *sqlite.Store
	Entries *entrycache.Cache
	Server  *nodeapi.Server
	// Federation is the server's federated bundle source.
	Federation *Federation
	// Addr is the gRPC target of the server ("unix:///...").
	Addr string

	sock string
	cert *tls.Certificate

	mu   sync.Mutex // guards grpc and firsts
	grpc *grpc.Server
	// firsts holds the first message of every Sync stream, in order.
	firsts []*apiv1.SyncResponse

	rev        atomic.Int64
	batchCalls atomic.Int64
	csrs       atomic.Int64
}

// New starts a server; it stops at the end of the test. Each of configure
// may change the server's configuration (add verifiers, an auditor...)
// before it is built.
func New(tb testing.TB, configure ...func(*nodeapi.Config)) *Env {
	tb.Helper()
	dir := tb.TempDir()
	authority, err := ca.New(ca.Config{TrustDomain: TrustDomain, Dir: filepath.Join(dir, "ca")})
	if err != nil {
		tb.Fatal(err)
	}
	store, err := sqlite.Open(context.Background(), filepath.Join(dir, "db", "datastore.sqlite3"), nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	e := &Env{
		tb: tb, CA: authority, Store: store, Entries: entrycache.New(nodeapi.ServerID(TrustDomain)),
		Federation: NewFederation(),
	}
	cfg := nodeapi.Config{
		TrustDomain: TrustDomain, Signer: authority, Agents: store, Entries: e.Entries,
		AgentSVIDTTL: time.Hour, DefaultSVIDTTL: time.Hour, Federation: e.Federation,
	}
	for _, f := range configure {
		f(&cfg)
	}
	e.Server, err = nodeapi.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	certs, err := authority.SignX509SVID(context.Background(), ca.X509SVIDParams{ID: nodeapi.ServerID(TrustDomain), PublicKey: key.Public(), TTL: time.Hour})
	if err != nil {
		tb.Fatal(err)
	}
	e.cert = &tls.Certificate{PrivateKey: key, Leaf: certs[0]}
	for _, c := range certs {
		e.cert.Certificate = append(e.cert.Certificate, c.Raw)
	}
	// A short path: unix socket paths are limited to 107 bytes.
	sockDir, err := os.MkdirTemp("", "nodeapi")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(sockDir) })
	e.sock = filepath.Join(sockDir, "node.sock")
	e.Addr = "unix://" + e.sock
	e.Start()
	tb.Cleanup(e.Stop)
	return e
}

// Start (re)starts serving on the socket, e.g. after Stop to make agents
// reconnect.
func (e *Env) Start() {
	e.tb.Helper()
	_ = os.Remove(e.sock)
	l, err := net.Listen("unix", e.sock)
	if err != nil {
		e.tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	for _, c := range e.CA.Bundle() {
		pool.AddCert(c)
	}
	s := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(&tls.Config{
			MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*e.cert},
			ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool,
		})),
		grpc.ChainUnaryInterceptor(e.countSigning),
		grpc.ChainStreamInterceptor(e.recordFirst),
	)
	apiv1.RegisterNodeServer(s, e.Server)
	e.mu.Lock()
	e.grpc = s
	e.mu.Unlock()
	go func() { _ = s.Serve(l) }()
}

// Stop stops serving, ending every stream at once.
func (e *Env) Stop() {
	e.mu.Lock()
	s := e.grpc
	e.grpc = nil
	e.mu.Unlock()
	if s != nil {
		s.Stop()
	}
}

func (e *Env) countSigning(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if r, ok := req.(*apiv1.BatchSignX509SVIDRequest); ok {
		e.batchCalls.Add(1)
		e.csrs.Add(int64(len(r.GetRequests())))
	}
	return handler(ctx, req)
}

// Signed returns the number of BatchSignX509SVID calls and of SVIDs asked
// for in them so far.
func (e *Env) Signed() (calls, csrs int64) { return e.batchCalls.Load(), e.csrs.Load() }

type firstRecorder struct {
	grpc.ServerStream
	e    *Env
	done bool
}

func (r *firstRecorder) SendMsg(m any) error {
	if resp, ok := m.(*apiv1.SyncResponse); ok && !r.done {
		r.done = true
		r.e.mu.Lock()
		r.e.firsts = append(r.e.firsts, proto.Clone(resp).(*apiv1.SyncResponse))
		r.e.mu.Unlock()
	}
	return r.ServerStream.SendMsg(m)
}

func (e *Env) recordFirst(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if info.FullMethod == apiv1.Node_Sync_FullMethodName {
		ss = &firstRecorder{ServerStream: ss, e: e}
	}
	return handler(srv, ss)
}

// FirstMessages returns the first message of every Sync stream so far.
func (e *Env) FirstMessages() []*apiv1.SyncResponse {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*apiv1.SyncResponse(nil), e.firsts...)
}

// Agent is an attested agent's identity.
type Agent struct {
	ID   spiffeid.ID
	SVID *x509svid.SVID
}

// NewAgent records an attested agent named name and returns its SVID.
func (e *Env) NewAgent(name string) *Agent {
	e.tb.Helper()
	id := spiffeid.RequireFromSegments(TrustDomain, "agent", "test", name)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	certs, err := e.CA.SignX509SVID(context.Background(), ca.X509SVIDParams{ID: id, PublicKey: key.Public(), TTL: time.Hour})
	if err != nil {
		e.tb.Fatal(err)
	}
	now := time.Now()
	if err := e.Store.CreateAgent(context.Background(), datastore.Agent{
		ID: id.String(), AttestationType: "test", SerialNumber: certs[0].SerialNumber.String(),
		ExpiresAt: certs[0].NotAfter, CreatedAt: now, UpdatedAt: now,
	}); err != nil {
		e.tb.Fatal(err)
	}
	return &Agent{ID: id, SVID: &x509svid.SVID{ID: id, Certificates: certs, PrivateKey: key}}
}

// NewSVID signs another SVID for id (a rotated agent SVID, or a workload
// SVID naming id) without touching the agent's record.
func (e *Env) NewSVID(id spiffeid.ID) *x509svid.SVID {
	e.tb.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	certs, err := e.CA.SignX509SVID(context.Background(), ca.X509SVIDParams{ID: id, PublicKey: key.Public(), TTL: time.Hour})
	if err != nil {
		e.tb.Fatal(err)
	}
	return &x509svid.SVID{ID: id, Certificates: certs, PrivateKey: key}
}

// Entry returns a workload entry for a, with one unix selector.
func Entry(a *Agent, id string, federatesWith ...spiffeid.TrustDomain) registration.Entry {
	return registration.Entry{
		ID: id, SPIFFEID: spiffeid.RequireFromSegments(TrustDomain, "workload", id), ParentID: a.ID,
		Selectors:     []registration.Selector{{Type: "unix", Value: "uid:1000"}},
		FederatesWith: federatesWith,
	}
}

// Put upserts entries at the next revision, as a datastore commit would,
// and returns that revision.
func (e *Env) Put(entries ...registration.Entry) int64 {
	rev := e.rev.Add(1)
	for i := range entries {
		entries[i].Revision = rev
		if entries[i].CreatedAt.IsZero() {
			entries[i].CreatedAt = time.Now()
		}
	}
	e.Entries.Apply(entries, nil, rev)
	return rev
}

// Delete deletes entries at the next revision and returns it.
func (e *Env) Delete(ids ...string) int64 {
	rev := e.rev.Add(1)
	e.Entries.Apply(nil, ids, rev)
	return rev
}

// Federation is a settable federated bundle source.
type Federation struct {
	mu      sync.Mutex // guards the fields that follow
	bundles map[spiffeid.TrustDomain]*spiffebundle.Bundle
	changed chan struct{}
}

// NewFederation returns an empty source.
func NewFederation() *Federation {
	return &Federation{bundles: map[spiffeid.TrustDomain]*spiffebundle.Bundle{}, changed: make(chan struct{})}
}

// Set replaces td's bundle; nil removes it.
func (f *Federation) Set(td spiffeid.TrustDomain, b *spiffebundle.Bundle) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if b == nil {
		delete(f.bundles, td)
	} else {
		f.bundles[td] = b.Clone()
	}
	close(f.changed)
	f.changed = make(chan struct{})
}

// Bundles implements nodeapi.FederationSource.
func (f *Federation) Bundles() map[spiffeid.TrustDomain]*spiffebundle.Bundle {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[spiffeid.TrustDomain]*spiffebundle.Bundle, len(f.bundles))
	for td, b := range f.bundles {
		out[td] = b.Clone()
	}
	return out
}

// Changed implements nodeapi.FederationSource.
func (f *Federation) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

// ForeignBundle returns a bundle for td with a fresh self-signed CA and,
// with jwt, one JWT key.
func ForeignBundle(tb testing.TB, td spiffeid.TrustDomain, jwt bool) *spiffebundle.Bundle {
	tb.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs: []*url.URL{td.ID().URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	b := spiffebundle.FromX509Authorities(td, []*x509.Certificate{cert})
	if jwt {
		jk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err := b.AddJWTAuthority("k-"+td.Name(), jk.Public()); err != nil {
			tb.Fatal(err)
		}
	}
	return b
}
