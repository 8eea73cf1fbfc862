package sds_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/hallmarkid/hallmark/agent/cache"
	"github.com/hallmarkid/hallmark/agent/peercred"
	"github.com/hallmarkid/hallmark/agent/workloadattest"
	"github.com/hallmarkid/hallmark/attestors/unix"
	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/sds"
	"github.com/hallmarkid/hallmark/server/ca"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

// env is a real SDS server on a unix socket with peercred credentials, the
// real unix workload attestor and a cache filled with SVIDs from a real CA.
type env struct {
	t     testing.TB
	dir   string // world-traversable
	sock  string
	cache *cache.Cache
	ca    *ca.CA
	h     *sds.Handler
	srv   *grpc.Server
	cc    *grpc.ClientConn
}

type envOpt func(*sds.Config)

// worldDir returns a temporary directory that a child of any uid can
// traverse.
func worldDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sds-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func newEnv(t testing.TB, opts ...envOpt) *env {
	return newEnvSocket(t, false, opts...)
}

// newEnvSocket starts the server; extra registers it as the extra socket.
func newEnvSocket(t testing.TB, extra bool, opts ...envOpt) *env {
	t.Helper()
	e := &env{t: t, dir: worldDir(t), cache: cache.New()}
	var err error
	e.ca, err = ca.New(ca.Config{TrustDomain: td, Dir: filepath.Join(e.dir, "ca")})
	if err != nil {
		t.Fatal(err)
	}
	e.setBundle(e.ca.Bundle())
	cfg := sds.HCLConfig{}.Config()
	cfg.Cache = e.cache
	cfg.Attestor = workloadattest.New(nil, unix.New(unix.Config{}))
	for _, o := range opts {
		o(&cfg)
	}
	e.h, err = sds.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.sock = filepath.Join(e.dir, "sds.sock")
	l, err := net.Listen("unix", e.sock)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(e.sock, 0o777); err != nil {
		t.Fatal(err)
	}
	e.srv = grpc.NewServer(grpc.Creds(peercred.TransportCredentials()))
	if extra {
		e.h.RegisterExtraSocket(e.srv)
	} else {
		e.h.Register(e.srv)
	}
	go func() { _ = e.srv.Serve(l) }()
	t.Cleanup(e.srv.Stop)
	e.cc = e.dial()
	return e
}

func (e *env) dial() *grpc.ClientConn {
	e.t.Helper()
	cc, err := grpc.NewClient("unix://"+e.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cc.Close() })
	return cc
}

func (e *env) client() secretv3.SecretDiscoveryServiceClient {
	return secretv3.NewSecretDiscoveryServiceClient(e.cc)
}

func (e *env) setBundle(certs []*x509.Certificate) {
	var der []byte
	for _, c := range certs {
		der = append(der, c.Raw...)
	}
	e.cache.SetBundle(&cache.Bundle{TrustDomain: td, Certs: certs, DER: der})
}

func uidSelector(uid int) registration.Selector {
	return registration.Selector{Type: "unix", Value: fmt.Sprintf("uid:%d", uid)}
}

func mkEntry(id, path string, rev int64, sels ...registration.Selector) registration.Entry {
	return registration.Entry{
		ID: id, SPIFFEID: spiffeid.RequireFromPath(td, path), ParentID: spiffeid.RequireFromPath(td, "/agent"),
		Selectors: sels, Revision: rev,
	}
}

// mint signs an SVID for entry with a fresh key.
func (e *env) mint(entry registration.Entry, ttl time.Duration) *cache.SVID {
	e.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	certs, err := e.ca.SignX509SVID(context.Background(), ca.X509SVIDParams{ID: entry.SPIFFEID, PublicKey: key.Public(), TTL: ttl})
	if err != nil {
		e.t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		e.t.Fatal(err)
	}
	var der []byte
	for _, c := range certs {
		der = append(der, c.Raw...)
	}
	return &cache.SVID{ID: entry.SPIFFEID, CertsDER: der, KeyDER: keyDER,
		ExpiresAt: certs[0].NotAfter, IssuedAt: time.Now(), EntryRevision: entry.Revision}
}

// leafOf parses s's leaf certificate.
func leafOf(t testing.TB, s *cache.SVID) *x509.Certificate {
	t.Helper()
	chain, err := s.Chain()
	if err != nil {
		t.Fatal(err)
	}
	return chain[0]
}

// addEntries adds entries with freshly minted SVIDs.
func (e *env) addEntries(entries ...registration.Entry) map[string]*cache.SVID {
	e.t.Helper()
	e.cache.UpdateEntries(false, entries, nil)
	svids := map[string]*cache.SVID{}
	for _, en := range entries {
		svids[en.ID] = e.mint(en, time.Hour)
	}
	e.cache.SetSVIDs(svids)
	return svids
}

// rotate mints a new SVID for entry and returns it.
func (e *env) rotate(entry registration.Entry) *cache.SVID {
	e.t.Helper()
	s := e.mint(entry, time.Hour)
	e.cache.SetSVIDs(map[string]*cache.SVID{entry.ID: s})
	return s
}

func headerCtx(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "true")
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return headerCtx(ctx)
}

// envoyNode is a node as Envoy major.minor sends it.
func envoyNode(major, minor uint32) *corev3.Node {
	return &corev3.Node{Id: "sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local", Cluster: "c", UserAgentName: "envoy",
		UserAgentVersionType: &corev3.Node_UserAgentBuildVersion{UserAgentBuildVersion: &corev3.BuildVersion{
			Version: &typev3.SemanticVersion{MajorNumber: major, MinorNumber: minor},
		}}}
}

// stream is a StreamSecrets client with a receive goroutine, so tests can
// wait for a response with a timeout or check that none comes.
type stream struct {
	t      testing.TB
	s      secretv3.SecretDiscoveryService_StreamSecretsClient
	resps  chan *discoveryv3.DiscoveryResponse
	errc   chan error
	cancel context.CancelFunc
}

func (e *env) openStream(header bool) *stream {
	e.t.Helper()
	return openStreamOn(e.t, e.client(), header)
}

func openStreamOn(t testing.TB, c secretv3.SecretDiscoveryServiceClient, header bool) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if header {
		ctx = headerCtx(ctx)
	}
	s, err := c.StreamSecrets(ctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	st := &stream{t: t, s: s, resps: make(chan *discoveryv3.DiscoveryResponse, 16), errc: make(chan error, 1), cancel: cancel}
	go func() {
		for {
			r, err := s.Recv()
			if err != nil {
				st.errc <- err
				return
			}
			st.resps <- r
		}
	}()
	t.Cleanup(cancel)
	return st
}

func (s *stream) send(req *discoveryv3.DiscoveryRequest) {
	s.t.Helper()
	req.TypeUrl = sds.SecretTypeURL
	// io.EOF means the server ended the stream; its status comes from Recv.
	if err := s.s.Send(req); err != nil && !errors.Is(err, io.EOF) {
		s.t.Fatalf("send: %v", err)
	}
}

// recv waits for the next response; it fails the test on a stream error.
func (s *stream) recv() *discoveryv3.DiscoveryResponse {
	s.t.Helper()
	select {
	case r := <-s.resps:
		validateResponse(s.t, r)
		return r
	case err := <-s.errc:
		s.t.Fatalf("stream ended: %v", err)
	case <-time.After(10 * time.Second):
		s.t.Fatal("no response within 10s")
	}
	return nil
}

// none checks that no response arrives within d.
func (s *stream) none(d time.Duration) {
	s.t.Helper()
	select {
	case r := <-s.resps:
		s.t.Fatalf("unexpected response version %s with %d resources", r.VersionInfo, len(r.Resources))
	case err := <-s.errc:
		s.t.Fatalf("stream ended: %v", err)
	case <-time.After(d):
	}
}

// streamErr waits for the stream to end and returns its error.
func (s *stream) streamErr() error {
	s.t.Helper()
	for {
		select {
		case <-s.resps:
		case err := <-s.errc:
			return err
		case <-time.After(15 * time.Second):
			s.t.Fatal("stream did not end within 15s")
			return nil
		}
	}
}

func validateResponse(t testing.TB, r *discoveryv3.DiscoveryResponse) {
	t.Helper()
	if err := r.Validate(); err != nil {
		t.Fatalf("response does not validate: %v", err)
	}
	if r.TypeUrl != sds.SecretTypeURL || r.VersionInfo == "" || r.Nonce == "" {
		t.Fatalf("response type %q version %q nonce %q", r.TypeUrl, r.VersionInfo, r.Nonce)
	}
	for _, a := range r.Resources {
		decode(t, a.GetTypeUrl(), a.GetValue())
	}
}

// decode unmarshals and validates one Secret.
func decode(t testing.TB, typeURL string, b []byte) *tlsv3.Secret {
	t.Helper()
	if typeURL != sds.SecretTypeURL {
		t.Fatalf("resource type %q", typeURL)
	}
	s := &tlsv3.Secret{}
	if err := protoUnmarshal(b, s); err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("secret %q does not validate: %v", s.Name, err)
	}
	if cv := s.GetValidationContext().GetCustomValidatorConfig(); cv != nil {
		cfg := &tlsv3.SPIFFECertValidatorConfig{}
		if err := cv.GetTypedConfig().UnmarshalTo(cfg); err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("SPIFFE validator config does not validate: %v", err)
		}
	}
	return s
}

func secrets(t testing.TB, r *discoveryv3.DiscoveryResponse) map[string]*tlsv3.Secret {
	t.Helper()
	out := map[string]*tlsv3.Secret{}
	for _, a := range r.Resources {
		s := decode(t, a.GetTypeUrl(), a.GetValue())
		out[s.Name] = s
	}
	return out
}

// certOf checks a TLS certificate secret (chain and matching key) and
// returns its leaf.
func certOf(t testing.TB, s *tlsv3.Secret) *x509.Certificate {
	t.Helper()
	tc := s.GetTlsCertificate()
	if tc == nil {
		t.Fatalf("secret %q is not a TLS certificate", s.Name)
	}
	pair, err := tls.X509KeyPair(tc.GetCertificateChain().GetInlineBytes(), tc.GetPrivateKey().GetInlineBytes())
	if err != nil {
		t.Fatalf("secret %q: %v", s.Name, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

func idOf(t testing.TB, s *tlsv3.Secret) string {
	t.Helper()
	leaf := certOf(t, s)
	if len(leaf.URIs) != 1 {
		t.Fatalf("leaf has %d URIs", len(leaf.URIs))
	}
	return leaf.URIs[0].String()
}

// rootsOf returns the trust domains and CA certificates of a validation
// context secret, and whether it used the SPIFFE validator.
func rootsOf(t testing.TB, s *tlsv3.Secret) (map[string][]*x509.Certificate, bool) {
	t.Helper()
	vc := s.GetValidationContext()
	if vc == nil {
		t.Fatalf("secret %q is not a validation context", s.Name)
	}
	if cv := vc.GetCustomValidatorConfig(); cv != nil {
		if cv.Name != sds.SPIFFEValidatorName || vc.GetTrustedCa() != nil {
			t.Fatalf("custom validator %q with trusted_ca %v", cv.Name, vc.GetTrustedCa())
		}
		cfg := &tlsv3.SPIFFECertValidatorConfig{}
		if err := cv.GetTypedConfig().UnmarshalTo(cfg); err != nil {
			t.Fatal(err)
		}
		out := map[string][]*x509.Certificate{}
		for _, d := range cfg.TrustDomains {
			out[d.Name] = parsePEM(t, d.GetTrustBundle().GetInlineBytes())
		}
		return out, true
	}
	return map[string][]*x509.Certificate{"": parsePEM(t, vc.GetTrustedCa().GetInlineBytes())}, false
}

func parsePEM(t testing.TB, b []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		t.Fatal("no certificates in PEM")
	}
	return out
}

func errContains(err error, want string) bool {
	if want == "" {
		return err == nil
	}
	return err != nil && strings.Contains(err.Error(), want)
}

// newCA returns another CA of the same trust domain (a CA rotation).
func newCA(t testing.TB) (*ca.CA, error) {
	return ca.New(ca.Config{TrustDomain: td, Dir: t.TempDir()})
}

func clientOf(cc *grpc.ClientConn) secretv3.SecretDiscoveryServiceClient {
	return secretv3.NewSecretDiscoveryServiceClient(cc)
}
