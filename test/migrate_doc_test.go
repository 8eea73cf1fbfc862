package test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/hallmarkid/hallmark/test/testenv"
)

// TestMigrateFromSPIREDoc runs docs/migrate-from-spire.md's Hallmark-side
// commands (steps 1, 3 and 4) verbatim (runDocBlock) against a SPIRE-format
// export (testdata/spire/entries.json, as `spire-server entry show -output
// json` prints it: node entries, an entry spire-controller-manager parented
// to a k8s_psat agent, federates_with, DNS names, hint, TTLs,
// revision_number, store_svid false). Step 2 runs on a SPIRE server; the
// test supplies what it leaves: SPIRE's bundle holding SPIRE's own root and
// the migration root.
//
// The workload on the swapped agent gets its SVID (entry ID, TTL, DNS
// names kept), which verifies against the migration root alone (what a
// workload still on SPIRE holds); its bundle verifies an SVID SPIRE signed
// before the migration; the federated bundle reaches it.
func TestMigrateFromSPIREDoc(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatalf("docs/migrate-from-spire.md uses openssl: %v", err)
	}
	doc, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "docs", "migrate-from-spire.md"))
	if err != nil {
		t.Fatal(err)
	}
	var block strings.Builder
	for _, heading := range []string{"## 1. A migration root", "## 3. The Hallmark server beside SPIRE", "## 4. Swap agents one at a time"} {
		b, err := readmeBlock(string(doc), heading)
		if err != nil {
			t.Fatal(err)
		}
		block.WriteString(b)
		if strings.HasPrefix(heading, "## 1.") {
			// Step 2, on the SPIRE server: SPIRE now chains to the
			// migration root and its bundle holds it.
			block.WriteString("cat migration/root.crt >> spire-bundle.pem\n")
		}
	}

	dir := t.TempDir()
	spireRoot, spireKey := testCA(t, "SPIRE self-signed root", "spiffe://example.org")
	partnerRoot, _ := testCA(t, "partner.org root", "spiffe://partner.org")
	writeCertPEM(t, filepath.Join(dir, "spire-bundle.pem"), spireRoot)
	writeCertPEM(t, filepath.Join(dir, "partner.org.pem"), partnerRoot)
	repo, tmp, out := runDocBlock(t, block.String(), map[string]string{
		"spire-entries.json": filepath.Join(testenv.RepoRoot(), "test", "testdata", "spire", "entries.json"),
		"spire-bundle.pem":   filepath.Join(dir, "spire-bundle.pem"),
		"partner.org.pem":    filepath.Join(dir, "partner.org.pem"),
	}, nil)

	// The export as imported: every entry, IDs kept, node entry and
	// agent-parented entry mapped, fields carried over.
	for _, want := range []string{
		"4 registration entries",
		"Entry ID         : 3f6c2a58-0d41-4c1e-9a8b-7e2d5f1c0b93\nSPIFFE ID        : spiffe://example.org/nodes/web-1\nParent ID        : spiffe://example.org/hallmark/server",
		"Entry ID         : 9b1cbf34-3d2a-4b77-8d5e-6c0f1e2a3b4c",
		"X509-SVID TTL    : 1800\nJWT-SVID TTL     : 300",
		"DNS name         : web.example.org",
		"Hint             : frontend",
		"Entry ID         : c41e7d02-55b8-4f0a-b6a9-2d8e9f7a1c35\nSPIFFE ID        : spiffe://example.org/ns/db/sa/postgres\n" +
			"Parent ID        : spiffe://example.org/agent/k8s_psat/prod/1c4a7e0b-8f2d-4e6a-9b3c-5d7f0e1a2b4c",
		"SPIFFE ID         : spiffe://example.org/agent/join_token/",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Fatalf("output:\n%s", out)
	}

	svidCerts := readCertsPEM(t, filepath.Join(tmp, "web", "svid.0.pem"))
	leaf := svidCerts[0]
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://example.org/web" {
		t.Fatalf("SVID names %v", leaf.URIs)
	}
	if !strings.Contains(strings.Join(leaf.DNSNames, ","), "web.example.org") {
		t.Errorf("SVID DNS names %v, want web.example.org", leaf.DNSNames)
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life < 29*time.Minute || life > 31*time.Minute+time.Minute {
		t.Errorf("SVID lifetime %v, want the entry's x509_svid_ttl of 30 min", life)
	}
	td := spiffeid.RequireTrustDomainFromString("example.org")
	migrationRoot := readCertsPEM(t, filepath.Join(repo, "migration", "root.crt"))
	// A workload still on SPIRE holds the migration root: it accepts the
	// SVID Hallmark signed.
	if _, _, err := x509svid.Verify(svidCerts, x509bundle.FromX509Authorities(td, migrationRoot)); err != nil {
		t.Fatalf("Hallmark's SVID does not verify against the migration root: %v", err)
	}
	// The workload on Hallmark accepts an SVID SPIRE signed with its old
	// self-signed root.
	bundle := readCertsPEM(t, filepath.Join(tmp, "web", "bundle.0.pem"))
	legacy := testLeaf(t, spireRoot, spireKey, "spiffe://example.org/legacy")
	if _, _, err := x509svid.Verify([]*x509.Certificate{legacy}, x509bundle.FromX509Authorities(td, bundle)); err != nil {
		t.Fatalf("the workload's bundle (%d roots) rejects an SVID SPIRE signed: %v", len(bundle), err)
	}
	fed := readCertsPEM(t, filepath.Join(tmp, "web", "federated_bundle.0.0.pem"))
	if len(fed) != 1 || !fed[0].Equal(partnerRoot) {
		t.Fatalf("federated bundle: %d certificates, want partner.org's root", len(fed))
	}
}

// testCA returns a self-signed CA certificate with a SPIFFE URI, as SPIRE
// makes its roots.
func testCA(t *testing.T, cn, uri string) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	u, err := url.Parse(uri)
	must(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{Organization: []string{"SPIFFE"}, CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, URIs: []*url.URL{u}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	must(t, err)
	c, err := x509.ParseCertificate(der)
	must(t, err)
	return c, key
}

// testLeaf returns an X509-SVID for id signed by ca.
func testLeaf(t *testing.T, ca *x509.Certificate, caKey crypto.Signer, id string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	u, err := url.Parse(id)
	must(t, err)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()),
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), URIs: []*url.URL{u},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}},
		ca, key.Public(), caKey)
	must(t, err)
	c, err := x509.ParseCertificate(der)
	must(t, err)
	return c
}

func writeCertPEM(t *testing.T, path string, c *x509.Certificate) {
	t.Helper()
	must(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o644))
}

func readCertsPEM(t *testing.T, path string) []*x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	certs := authorities(t, string(data))
	if len(certs) == 0 {
		t.Fatalf("%s holds no certificate", path)
	}
	return certs
}
