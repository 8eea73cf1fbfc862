package test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/hallmarkid/hallmark/test/testenv"
)

// TestCARotationMTLS runs the server with a 20-second CA lifetime, so its
// authorities rotate every few seconds, while two workloads served by one
// agent hold mTLS conversations with each other (go-spiffe spiffetls, each
// side authorising the other's SPIFFE ID) without pause. Across at least
// three rotations not one handshake or exchange may fail: each new
// authority reaches every bundle before anything is signed with it, and
// old ones stay until what they signed has expired.
func TestCARotationMTLS(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer(testenv.WithServerHCL(`ca_ttl = "20s"
  default_x509_svid_ttl = "6s"
  agent_svid_ttl = "8s"`))
	ag := env.StartAgent(srv, srv.Token())
	idA := spiffeid.RequireFromString("spiffe://example.org/rotation/a")
	idB := spiffeid.RequireFromString("spiffe://example.org/rotation/b")
	for _, id := range []spiffeid.ID{idA, idB} {
		srv.CreateEntry(id.String(), ag.ID(), "-selector", uidSelector())
		waitForSVID(t, ag.Addr(), id.String())
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srcA := pickSource(t, ctx, ag.Addr(), idA)
	srcB := pickSource(t, ctx, ag.Addr(), idB)
	// Each workload serves the other and dials it.
	lnA := echoServer(t, ctx, srcA, idB)
	lnB := echoServer(t, ctx, srcB, idA)

	var ok, failed atomic.Int64
	var errMu sync.Mutex
	var firstErrs []string
	var wg sync.WaitGroup
	for _, d := range []struct {
		src  *workloadapi.X509Source
		peer spiffeid.ID
		addr string
	}{{srcA, idB, lnB}, {srcB, idA, lnA}} {
		wg.Go(func() {
			for ctx.Err() == nil {
				if err := exchange(ctx, d.src, d.peer, d.addr); err != nil {
					if ctx.Err() != nil {
						return
					}
					failed.Add(1)
					errMu.Lock()
					if len(firstErrs) < 5 {
						firstErrs = append(firstErrs, fmt.Sprintf("%s: %v", time.Now().Format("15:04:05.000"), err))
					}
					errMu.Unlock()
				} else {
					ok.Add(1)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}

	// Watch the issuers of the SVIDs the workloads hold and the size of
	// their bundle until three rotations have happened.
	issuers := map[string]bool{}
	maxBundle := 0
	deadline := time.Now().Add(90 * time.Second)
	for len(issuers) < 4 {
		if time.Now().After(deadline) {
			cancel()
			wg.Wait()
			t.Fatalf("saw %d CA authorities in 90 s, want 4 (three rotations); %d exchanges, %d failed",
				len(issuers), ok.Load(), failed.Load())
		}
		for _, src := range []*workloadapi.X509Source{srcA, srcB} {
			s, err := src.GetX509SVID()
			if err != nil {
				t.Fatal(err)
			}
			issuers[hex.EncodeToString(s.Certificates[0].AuthorityKeyId)] = true
			b, err := src.GetX509BundleForTrustDomain(idA.TrustDomain())
			if err != nil {
				t.Fatal(err)
			}
			maxBundle = max(maxBundle, len(b.X509Authorities()))
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	t.Logf("%d CA authorities, bundle up to %d, %d exchanges, %d failed", len(issuers), maxBundle, ok.Load(), failed.Load())
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d mTLS exchanges failed across CA rotations; first: %v", n, n+ok.Load(), firstErrs)
	}
	if ok.Load() < 100 {
		t.Fatalf("only %d exchanges: the workloads were not talking continuously", ok.Load())
	}
	if maxBundle < 2 {
		t.Fatalf("the bundle never held more than %d authority: the next one was not published ahead", maxBundle)
	}
}

// TestUpstreamCAMTLS runs the server under an upstream CA read from disk:
// workloads receive [leaf, intermediate] chains, their bundle is the
// upstream root alone, and mTLS keeps working while the intermediate
// rotates.
//
// Both tests use a 20 s CA lifetime: a leaf signed just before an
// activation lives at most 1/6 of it and the agent renews it at half that,
// so the renewal margin is ~1/12 of the CA lifetime (1.8 s here; 14 h with
// the default week). Shorter lifetimes make the test depend on how busy
// the machine is.
func TestUpstreamCAMTLS(t *testing.T) {
	env := testenv.New(t)
	root, certPath, keyPath := writeUpstream(t, env.Dir)
	srv := env.StartServer(testenv.WithServerHCL(`ca_ttl = "20s"
  default_x509_svid_ttl = "6s"
  agent_svid_ttl = "8s"`), testenv.WithHCL(fmt.Sprintf(`upstream_authority "disk" {
  cert_file_path = %q
  key_file_path  = %q
}`, certPath, keyPath)))
	ag := env.StartAgent(srv, srv.Token())
	idA := spiffeid.RequireFromString("spiffe://example.org/upstream/a")
	idB := spiffeid.RequireFromString("spiffe://example.org/upstream/b")
	for _, id := range []spiffeid.ID{idA, idB} {
		srv.CreateEntry(id.String(), ag.ID(), "-selector", uidSelector())
		waitForSVID(t, ag.Addr(), id.String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srcA := pickSource(t, ctx, ag.Addr(), idA)
	srcB := pickSource(t, ctx, ag.Addr(), idB)
	lnB := echoServer(t, ctx, srcB, idA)

	intermediates := map[string]bool{}
	deadline := time.Now().Add(45 * time.Second)
	exchanges := 0
	for len(intermediates) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("saw %d intermediates in 45 s, want a rotation", len(intermediates))
		}
		if err := exchange(ctx, srcA, idB, lnB); err != nil {
			t.Fatalf("mTLS exchange %d failed: %v", exchanges, err)
		}
		exchanges++
		s, err := srcA.GetX509SVID()
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Certificates) != 2 || s.Certificates[1].CheckSignatureFrom(root) != nil {
			t.Fatalf("SVID chain has %d certificates, want [leaf, intermediate signed by the upstream]", len(s.Certificates))
		}
		intermediates[hex.EncodeToString(s.Certificates[1].SubjectKeyId)] = true
		b, err := srcA.GetX509BundleForTrustDomain(idA.TrustDomain())
		if err != nil {
			t.Fatal(err)
		}
		if auths := b.X509Authorities(); len(auths) != 1 || !auths[0].Equal(root) {
			t.Fatalf("bundle holds %d authorities, want the upstream root only", len(auths))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%d intermediates, %d exchanges", len(intermediates), exchanges)
}

// writeUpstream makes a P-256 root CA and writes its certificate and key
// (mode 0600) into dir.
func writeUpstream(t *testing.T, dir string) (root *x509.Certificate, certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{Organization: []string{"Corp"}, CommonName: "Corp Root CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	if root, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "upstream.crt"), filepath.Join(dir, "upstream.key")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return root, certPath, keyPath
}

// pickSource returns an X509Source that serves the SVID for id.
func pickSource(t *testing.T, ctx context.Context, addr string, id spiffeid.ID) *workloadapi.X509Source {
	t.Helper()
	src, err := workloadapi.NewX509Source(ctx,
		workloadapi.WithClientOptions(workloadapi.WithAddr(addr)),
		workloadapi.WithDefaultX509SVIDPicker(func(svids []*x509svid.SVID) *x509svid.SVID {
			for _, s := range svids {
				if s.ID == id {
					return s
				}
			}
			return svids[0]
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	if s, err := src.GetX509SVID(); err != nil || s.ID != id {
		t.Fatalf("source for %s holds %v (%v)", id, s, err)
	}
	return src
}

// echoServer accepts mTLS connections from peer and echoes one line each.
func echoServer(t *testing.T, ctx context.Context, src *workloadapi.X509Source, peer spiffeid.ID) string {
	t.Helper()
	ln, err := spiffetls.ListenWithMode(ctx, "tcp", "127.0.0.1:0", spiffetls.MTLSServerWithSource(tlsconfig.AuthorizeID(peer), src))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				line, err := bufio.NewReader(c).ReadString('\n')
				if err != nil {
					return
				}
				_, _ = c.Write([]byte(line))
			}()
		}
	}()
	return ln.Addr().String()
}

// exchange dials addr over mTLS as src, expecting peer, and round-trips a
// line; the handshake completes on the first write.
func exchange(ctx context.Context, src *workloadapi.X509Source, peer spiffeid.ID, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := spiffetls.DialWithMode(ctx, "tcp", addr, spiffetls.MTLSClientWithSource(tlsconfig.AuthorizeID(peer), src),
		spiffetls.WithDialer(&net.Dialer{Timeout: 5 * time.Second}))
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if line != "ping\n" {
		return fmt.Errorf("echo %q", line)
	}
	return nil
}
