package test

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"net"
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
