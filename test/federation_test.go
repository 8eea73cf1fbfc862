package test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/test/testenv"
)

// federatedPair is two servers of different trust domains federating
// with each other over loopback bundle endpoints: A (example.org) serves
// https_spiffe, B (other.org) serves https_web with a certificate of a
// test CA that A trusts through SSL_CERT_FILE.
type federatedPair struct {
	A, B           *testenv.Server
	AURL, BURL     string
	webCA          *x509.Certificate
	webCertDir     string
	aBundleSPIFFE  string // path of A's bundle, the bootstrap of B's relationship
	aFederationHCL string
}

func startFederatedPair(t *testing.T, env *testenv.Env) *federatedPair {
	t.Helper()
	p := &federatedPair{webCertDir: t.TempDir()}
	aPort, bPort := testenv.FreePort(t), testenv.FreePort(t)
	p.AURL, p.BURL = fmt.Sprintf("https://127.0.0.1:%d", aPort), fmt.Sprintf("https://127.0.0.1:%d", bPort)
	caPath, certPath, keyPath := writeWebPKI(t, p.webCertDir)

	p.aFederationHCL = fmt.Sprintf(`federation {
  bundle_endpoint {
    address      = "127.0.0.1"
    port         = %d
    refresh_hint = "1m"
  }
  federates_with "other.org" {
    bundle_endpoint_url = %q
    bundle_endpoint_profile "https_web" {}
  }
}`, aPort, p.BURL)
	// A starts first: B is not up yet, so its first fetch fails and is
	// retried; the tests refresh explicitly.
	p.A = env.StartServer(testenv.WithHCL(p.aFederationHCL), testenv.WithServerEnv("SSL_CERT_FILE="+caPath))

	p.aBundleSPIFFE = filepath.Join(p.webCertDir, "example.org.bundle")
	must(t, os.WriteFile(p.aBundleSPIFFE, []byte(p.A.MustCLI("bundle", "show", "-format", "spiffe")), 0o600))
	p.B = env.StartServer(testenv.WithTrustDomain("other.org"), testenv.WithHCL(fmt.Sprintf(`federation {
  bundle_endpoint {
    address = "127.0.0.1"
    port    = %d
    profile "https_web" {
      serving_cert_file {
        cert_file_path = %q
        key_file_path  = %q
      }
    }
  }
  federates_with "example.org" {
    bundle_endpoint_url = %q
    bundle_endpoint_profile "https_spiffe" {
      endpoint_spiffe_id = "spiffe://example.org/hallmark/server"
    }
    trust_bundle_path   = %q
    trust_bundle_format = "spiffe"
  }
}`, bPort, certPath, keyPath, p.AURL, p.aBundleSPIFFE)))
	// B fetched A at start-up; A fetches B now that B is up.
	testenv.WaitFor(t, 15*time.Second, "A to fetch the bundle of other.org", func() bool {
		_, err := p.A.CLI("federation", "refresh", "-id", "other.org")
		return err == nil
	})
	testenv.WaitFor(t, 15*time.Second, "B to fetch the bundle of example.org", func() bool {
		out, err := p.B.CLI("federation", "list")
		return err == nil && strings.Contains(out, "Last success      : 2")
	})
	return p
}

// writeWebPKI writes a test CA and a certificate for 127.0.0.1 signed by
// it, for an https_web bundle endpoint.
func writeWebPKI(t *testing.T, dir string) (caPath, certPath, keyPath string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "federation test web CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	must(t, err)
	ca, err := x509.ParseCertificate(caDER)
	must(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2),
		Subject: pkix.Name{CommonName: "127.0.0.1"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, ca, key.Public(), caKey)
	must(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	must(t, err)
	caPath, certPath, keyPath = filepath.Join(dir, "web-ca.pem"), filepath.Join(dir, "endpoint.crt"), filepath.Join(dir, "endpoint.key")
	must(t, os.WriteFile(caPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600))
	must(t, os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}), 0o600))
	must(t, os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600))
	return caPath, certPath, keyPath
}

// authorities parses a PEM bundle.
func authorities(t *testing.T, pemText string) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for rest := []byte(pemText); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return out
		}
		c, err := x509.ParseCertificate(b.Bytes)
		must(t, err)
		out = append(out, c)
	}
}

func sameAuthorities(a, b []*x509.Certificate) bool {
	if len(a) != len(b) || len(a) == 0 {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

// Two trust domains federate through the real binaries: each server holds
// the other's bundle, fetched from its endpoint (https_spiffe one way,
// https_web with a private CA the other), and never mixes it into its own.
func TestFederationTwoTrustDomains(t *testing.T) {
	env := testenv.New(t)
	p := startFederatedPair(t, env)

	aOwn, bOwn := authorities(t, p.A.MustCLI("bundle", "show")), authorities(t, p.B.MustCLI("bundle", "show"))
	if got := authorities(t, p.A.MustCLI("bundle", "list", "-id", "other.org")); !sameAuthorities(got, bOwn) {
		t.Fatalf("A holds %d authorities of other.org, not B's bundle", len(got))
	}
	if got := authorities(t, p.B.MustCLI("bundle", "list", "-id", "spiffe://example.org")); !sameAuthorities(got, aOwn) {
		t.Fatalf("B holds %d authorities of example.org, not A's bundle", len(got))
	}
	// Foreign bundles stay apart from our own.
	if got := authorities(t, p.A.MustCLI("bundle", "show")); !sameAuthorities(got, aOwn) {
		t.Fatal("A's own bundle changed after federating")
	}
	doc := p.A.MustCLI("bundle", "list", "-id", "other.org", "-format", "spiffe")
	b, err := spiffebundle.Parse(spiffeid.RequireTrustDomainFromString("other.org"), []byte(doc))
	if err != nil || !sameAuthorities(b.X509Authorities(), bOwn) {
		t.Fatalf("bundle list -format spiffe: %v\n%s", err, doc)
	}
	if seq, ok := b.SequenceNumber(); !ok || seq == 0 {
		t.Fatalf("fetched bundle has no spiffe_sequence: %s", doc)
	}
	all := p.A.MustCLI("bundle", "list")
	if !strings.Contains(all, "* other.org") || strings.Contains(all, "example.org") {
		t.Fatalf("bundle list:\n%s", all)
	}

	out := p.A.MustCLI("federation", "list")
	for _, want := range []string{"Found 1 federation relationship\n", "Trust domain      : other.org", "Bundle endpoint   : " + p.BURL,
		"Endpoint profile  : https_web", "Bundle            : 1 X.509 authority", "Sequence          : "} {
		if !strings.Contains(out, want) {
			t.Fatalf("federation list lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Last error") {
		t.Fatalf("federation list shows an error after a successful refresh:\n%s", out)
	}
	out = p.B.MustCLI("federation", "refresh", "-id", "example.org")
	if !strings.Contains(out, "Bundle refreshed.") || !strings.Contains(out, "Endpoint profile  : https_spiffe") {
		t.Fatalf("federation refresh:\n%s", out)
	}

	// Entries federate with the other trust domain, never our own.
	id := p.A.CreateEntry("spiffe://example.org/fed-client", "spiffe://example.org/agent/x", "-selector", "unix:uid:4242",
		"-federatesWith", "spiffe://other.org")
	if out := p.A.MustCLI("entry", "show", "-entryID", id); !strings.Contains(out, "FederatesWith    : spiffe://other.org") {
		t.Fatalf("entry show lacks FederatesWith:\n%s", out)
	}
	if out, err := p.A.CLI("entry", "create", "-spiffeID", "spiffe://example.org/self-fed", "-parentID", "spiffe://example.org/agent/x",
		"-selector", "unix:uid:4243", "-federatesWith", "spiffe://example.org"); err == nil || !strings.Contains(out, "own trust domain") {
		t.Fatalf("federatesWith our own trust domain accepted: err=%v\n%s", err, out)
	}
}

// The operator's bundle commands: static trust of a third domain, and the
// refusals (our own trust domain, deleting a configured relationship,
// refreshing a static bundle), each audited.
func TestCLIFederationBundles(t *testing.T) {
	env := testenv.New(t)
	p := startFederatedPair(t, env)
	a := p.A

	// B's PEM bundle, set on A under a third name, is refused: its
	// authority names other.org.
	bPEM := filepath.Join(env.Dir, "other.pem")
	must(t, os.WriteFile(bPEM, []byte(p.B.MustCLI("bundle", "show")), 0o600))
	if out, err := a.CLI("bundle", "set", "-id", "third.org", "-path", bPEM); err == nil || !strings.Contains(out, `names "spiffe://other.org"`) {
		t.Fatalf("bundle of another trust domain accepted: err=%v\n%s", err, out)
	}
	// Our own trust domain is refused, by name or ID, PEM or SPIFFE.
	aPEM := filepath.Join(env.Dir, "own.pem")
	must(t, os.WriteFile(aPEM, []byte(a.MustCLI("bundle", "show")), 0o600))
	for _, args := range [][]string{
		{"-id", "example.org", "-path", aPEM},
		{"-id", "spiffe://example.org", "-path", p.aBundleSPIFFE, "-format", "spiffe"},
	} {
		if out, err := a.CLI(append([]string{"bundle", "set"}, args...)...); err == nil || !strings.Contains(out, "own trust domain") {
			t.Fatalf("bundle set %v accepted: err=%v\n%s", args, err, out)
		}
	}
	ownBefore := a.MustCLI("bundle", "show")

	// A static bundle of a third trust domain (a third server's).
	third := env.StartServer(testenv.WithTrustDomain("third.org"))
	thirdPEM := filepath.Join(env.Dir, "third.pem")
	must(t, os.WriteFile(thirdPEM, []byte(third.MustCLI("bundle", "show")), 0o600))
	if out := a.MustCLI("bundle", "set", "-id", "spiffe://third.org", "-path", thirdPEM); !strings.Contains(out, "static bundle") {
		t.Fatalf("bundle set:\n%s", out)
	}
	if got := authorities(t, a.MustCLI("bundle", "list", "-id", "third.org")); !sameAuthorities(got, authorities(t, third.MustCLI("bundle", "show"))) {
		t.Fatal("bundle list -id third.org does not show the bundle set")
	}
	if out := a.MustCLI("federation", "list"); !strings.Contains(out, "Found 2 federation relationships") ||
		!strings.Contains(out, "Trust domain      : third.org\nBundle source     : static (bundle set)") {
		t.Fatalf("federation list:\n%s", out)
	}
	if out, err := a.CLI("federation", "refresh", "-id", "third.org"); err == nil || !strings.Contains(out, "no endpoint to fetch from") {
		t.Fatalf("refresh of a static bundle: err=%v\n%s", err, out)
	}
	// It survives a restart.
	a.Stop()
	a.Start()
	if out := a.MustCLI("bundle", "list"); !strings.Contains(out, "* third.org") || !strings.Contains(out, "* other.org") {
		t.Fatalf("bundles after restart:\n%s", out)
	}
	// SPIFFE format from stdin-less file, replacing it.
	thirdDoc := filepath.Join(env.Dir, "third.json")
	must(t, os.WriteFile(thirdDoc, []byte(third.MustCLI("bundle", "show", "-format", "spiffe")), 0o600))
	a.MustCLI("bundle", "set", "-id", "third.org", "-path", thirdDoc, "-format", "spiffe")

	if out, err := a.CLI("bundle", "delete", "-id", "other.org"); err == nil || !strings.Contains(out, "configured with federates_with") {
		t.Fatalf("deleting a configured relationship: err=%v\n%s", err, out)
	}
	if out := a.MustCLI("bundle", "delete", "-id", "third.org"); !strings.Contains(out, "Bundle deleted.") {
		t.Fatalf("bundle delete:\n%s", out)
	}
	if out, err := a.CLI("bundle", "list", "-id", "third.org"); err == nil || !strings.Contains(out, "NotFound") {
		t.Fatalf("deleted bundle still listed: err=%v\n%s", err, out)
	}
	if out, err := a.CLI("bundle", "delete", "-id", "third.org"); err == nil || !strings.Contains(out, "NotFound") {
		t.Fatalf("second delete: err=%v\n%s", err, out)
	}
	if a.MustCLI("bundle", "show") != ownBefore {
		t.Fatal("our own bundle changed")
	}

	var recs []map[string]any
	auditPath := filepath.Join(a.Dir, "data", "audit.log")
	testenv.WaitFor(t, 5*time.Second, "audit records", func() bool {
		recs = readAudit(t, auditPath)
		return find(recs, map[string]any{"kind": "admin", "action": "bundle_delete", "trust_domain": "third.org"}) != nil
	})
	for _, want := range []map[string]any{
		{"kind": "admin", "action": "bundle_set", "trust_domain": "example.org", "result": "rejected"},
		{"kind": "admin", "action": "bundle_set", "trust_domain": "third.org", "result": "rejected"},
		{"kind": "admin", "action": "bundle_set", "trust_domain": "third.org", "static": true},
		{"kind": "admin", "action": "bundle_delete", "trust_domain": "other.org", "result": "rejected"},
		{"kind": "admin", "action": "federation_refresh", "trust_domain": "other.org", "result": "ok"},
		{"kind": "admin", "action": "federation_refresh", "trust_domain": "third.org", "result": "rejected"},
	} {
		if find(recs, want) == nil {
			t.Errorf("no audit record %v", want)
		}
	}
}

// A bundle endpoint that is not the configured one is rejected through the
// real binaries: an endpoint of another trust domain, then the right
// trust domain's endpoint under an unexpected SPIFFE ID. The bootstrap
// bundle stays, and the reason is shown.
func TestFederationEndpointRejected(t *testing.T) {
	env := testenv.New(t)
	spiffeEndpoint := func(td string) (*testenv.Server, string) {
		port := testenv.FreePort(t)
		srv := env.StartServer(testenv.WithTrustDomain(td), testenv.WithHCL(fmt.Sprintf(
			"federation {\n  bundle_endpoint {\n    address = \"127.0.0.1\"\n    port = %d\n  }\n}", port)))
		return srv, fmt.Sprintf("https://127.0.0.1:%d", port)
	}
	other, otherURL := spiffeEndpoint("other.org")
	_, wrongURL := spiffeEndpoint("wrong.org")
	otherBundle := filepath.Join(env.Dir, "other.pem")
	must(t, os.WriteFile(otherBundle, []byte(other.MustCLI("bundle", "show")), 0o600))

	relationship := func(url, endpointID string) string {
		return fmt.Sprintf(`federation {
  federates_with "other.org" {
    bundle_endpoint_url = %q
    bundle_endpoint_profile "https_spiffe" {
      endpoint_spiffe_id = %q
    }
    trust_bundle_path = %q
  }
}`, url, endpointID, otherBundle)
	}
	a := env.StartServer(testenv.WithHCL(relationship(wrongURL, "spiffe://other.org/hallmark/server")))
	tests := []struct {
		name        string
		url, id     string
		wantErr     string
		reconfigure bool
	}{
		{name: "endpoint of another trust domain", url: wrongURL, id: "spiffe://other.org/hallmark/server",
			wantErr: `is in trust domain "wrong.org", want "other.org"`},
		{name: "unexpected endpoint SPIFFE ID", url: otherURL, id: "spiffe://other.org/not-the-endpoint",
			wantErr: `endpoint SVID is "spiffe://other.org/hallmark/server", want "spiffe://other.org/not-the-endpoint"`, reconfigure: true},
	}
	otherAuthorities := authorities(t, other.MustCLI("bundle", "show"))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.reconfigure {
				cfg, err := os.ReadFile(a.ConfigPath)
				must(t, err)
				i := strings.Index(string(cfg), "federation {")
				must(t, os.WriteFile(a.ConfigPath, []byte(string(cfg[:i])+relationship(tt.url, tt.id)+"\n"), 0o600))
				a.Stop()
				a.Start()
			}
			out, err := a.CLI("federation", "refresh", "-id", "other.org")
			if err == nil || !strings.Contains(out, tt.wantErr) {
				t.Fatalf("refresh: err=%v, want %q\n%s", err, tt.wantErr, out)
			}
			if out := a.MustCLI("federation", "list"); !strings.Contains(out, "Last error        : ") || !strings.Contains(out, tt.wantErr) {
				t.Fatalf("federation list does not show the reason:\n%s", out)
			}
			if got := authorities(t, a.MustCLI("bundle", "list", "-id", "other.org")); !sameAuthorities(got, otherAuthorities) {
				t.Fatal("the bootstrap bundle of other.org did not stay")
			}
			if !strings.Contains(a.Log(), "Federated bundle refresh failed") {
				t.Fatal("the rejection was not logged")
			}
		})
	}
	// The right endpoint and ID: accepted.
	cfg, err := os.ReadFile(a.ConfigPath)
	must(t, err)
	i := strings.Index(string(cfg), "federation {")
	must(t, os.WriteFile(a.ConfigPath, []byte(string(cfg[:i])+relationship(otherURL, "spiffe://other.org/hallmark/server")+"\n"), 0o600))
	a.Stop()
	a.Start()
	a.MustCLI("federation", "refresh", "-id", "other.org")
}

// waitForBundle waits until the Workload API at addr hands the caller the
// bundle of td with exactly want as its authorities.
func waitForBundle(t *testing.T, addr, td string, want []*x509.Certificate) {
	t.Helper()
	trust := spiffeid.RequireTrustDomainFromString(td)
	testenv.WaitFor(t, 20*time.Second, "bundle of "+td+" at "+addr, func() bool {
		c, err := fetchErr(addr)
		if err != nil {
			return false
		}
		b, err := c.Bundles.GetX509BundleForTrustDomain(trust)
		return err == nil && sameAuthorities(b.X509Authorities(), want)
	})
}

// Workloads of two trust domains authenticate each other: each entry
// federates with the other trust domain, a stock go-spiffe client on each
// agent receives the other's bundle in its X509 context, and spiffetls
// mTLS completes in both directions. Revoking a trust domain (an empty
// bundle) stops it; setting the bundle again restores it. A workload whose
// entry does not federate gets no foreign bundle and fails the handshake.
func TestFederationMTLSAcrossTrustDomains(t *testing.T) {
	env := testenv.New(t)
	p := startFederatedPair(t, env)
	agA, agB := env.StartAgent(p.A, p.A.Token()), env.StartAgent(p.B, p.B.Token())
	clientID, serverID := spiffeid.RequireFromString("spiffe://example.org/fed-client"), spiffeid.RequireFromString("spiffe://other.org/fed-server")
	p.A.CreateEntry(clientID.String(), agA.ID(), "-selector", uidSelector(), "-federatesWith", "spiffe://other.org")
	p.B.CreateEntry(serverID.String(), agB.ID(), "-selector", uidSelector(), "-federatesWith", "example.org")
	waitForSVID(t, agA.Addr(), clientID.String())
	waitForSVID(t, agB.Addr(), serverID.String())
	aOwn, bOwn := authorities(t, p.A.MustCLI("bundle", "show")), authorities(t, p.B.MustCLI("bundle", "show"))
	waitForBundle(t, agA.Addr(), "other.org", bOwn)
	waitForBundle(t, agB.Addr(), "example.org", aOwn)
	// Our own bundle is still ours alone.
	waitForBundle(t, agA.Addr(), "example.org", aOwn)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srcA, srcB := pickSource(t, ctx, agA.Addr(), clientID), pickSource(t, ctx, agB.Addr(), serverID)
	if err := exchange(ctx, srcA, serverID, echoServer(t, ctx, srcB, clientID)); err != nil {
		t.Fatalf("example.org -> other.org: %v", err)
	}
	if err := exchange(ctx, srcB, clientID, echoServer(t, ctx, srcA, serverID)); err != nil {
		t.Fatalf("other.org -> example.org: %v", err)
	}

	// B's operator revokes example.org (an empty bundle): B's workloads
	// lose its bundle and stop accepting A's workloads, until the operator
	// sets A's bundle again.
	revoked := filepath.Join(env.Dir, "revoked.json")
	must(t, os.WriteFile(revoked, []byte(`{"keys": []}`), 0o600))
	p.B.MustCLI("bundle", "set", "-id", "example.org", "-path", revoked, "-format", "spiffe")
	if out := p.B.MustCLI("federation", "list"); !strings.Contains(out, "Bundle            : REVOKED (empty)") {
		t.Fatalf("federation list after revocation:\n%s", out)
	}
	testenv.WaitFor(t, 20*time.Second, "example.org revoked at B's workload", func() bool {
		c, err := fetchErr(agB.Addr())
		if err != nil {
			return false
		}
		_, ok := c.Bundles.Get(spiffeid.RequireTrustDomainFromString("example.org"))
		return !ok
	})
	if err := exchange(ctx, srcA, serverID, echoServer(t, ctx, srcB, clientID)); err == nil {
		t.Fatal("mTLS example.org -> other.org succeeded after other.org revoked example.org")
	}
	p.B.MustCLI("bundle", "set", "-id", "example.org", "-path", p.aBundleSPIFFE, "-format", "spiffe")
	waitForBundle(t, agB.Addr(), "example.org", aOwn)
	testenv.WaitFor(t, 10*time.Second, "mTLS after the bundle was set again", func() bool {
		return exchange(ctx, srcA, serverID, echoServer(t, ctx, srcB, clientID)) == nil
	})

	// A workload of example.org whose entry does not federate.
	agA2 := env.StartAgent(p.A, p.A.Token())
	loner := spiffeid.RequireFromString("spiffe://example.org/not-federated")
	p.A.CreateEntry(loner.String(), agA2.ID(), "-selector", uidSelector())
	c := waitForSVID(t, agA2.Addr(), loner.String())
	if _, ok := c.Bundles.Get(spiffeid.RequireTrustDomainFromString("other.org")); ok {
		t.Fatal("a workload whose entry does not federate got the bundle of other.org")
	}
	srcLoner := pickSource(t, ctx, agA2.Addr(), loner)
	if err := exchange(ctx, srcLoner, serverID, echoServer(t, ctx, srcB, loner)); err == nil {
		t.Fatal("mTLS to other.org succeeded without its bundle")
	}
}

// Two servers on one PostgreSQL database, neither with a federation block:
// a bundle set with the CLI on A reaches a workload of B's agent whose
// entry federates with that trust domain, and a delete on A removes it.
func TestHAStaticBundleWithoutFederationBlock(t *testing.T) {
	ds := postgresDatastore(t)
	env := testenv.New(t)
	a := env.StartServer(testenv.WithHCL(ds))
	b := env.StartServer(testenv.WithHCL(ds), testenv.WithCAFrom(a))
	ag := env.StartAgent(b, b.Token())
	const wid = "spiffe://example.org/static-federated"
	a.CreateEntry(wid, ag.ID(), "-selector", uidSelector(), "-federatesWith", "spiffe://third.org")
	waitForSVID(t, ag.Addr(), wid)

	third := env.StartServer(testenv.WithTrustDomain("third.org"))
	thirdPEM := filepath.Join(env.Dir, "third.pem")
	must(t, os.WriteFile(thirdPEM, []byte(third.MustCLI("bundle", "show")), 0o600))
	a.MustCLI("bundle", "set", "-id", "spiffe://third.org", "-path", thirdPEM)
	waitForBundle(t, ag.Addr(), "third.org", authorities(t, third.MustCLI("bundle", "show")))

	// SPIRE's default mode (restrict) refuses while an entry federates
	// with the trust domain; dissociate removes it from the entry first.
	if out, err := a.CLI("bundle", "delete", "-id", "third.org"); err == nil || !strings.Contains(out, "-mode dissociate") {
		t.Fatalf("bundle delete of a bundle an entry federates with: err = %v, output %q; want a refusal naming -mode", err, out)
	}
	a.MustCLI("bundle", "delete", "-id", "third.org", "-mode", "dissociate")
	testenv.WaitFor(t, 30*time.Second, "third.org's bundle gone at B's agent", func() bool {
		c, err := fetchErr(ag.Addr())
		if err != nil {
			return false
		}
		_, err = c.Bundles.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("third.org"))
		return err != nil
	})
}
