package test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/test/testenv"
)

// sharedStateBound is how soon a change of the state two servers share in
// PostgreSQL must take effect on the other one: a correctness bound (the
// datastore announces the write), far below what polling gives.
const sharedStateBound = 5 * time.Second

// TestHASharedStateAtOnce: state the servers of an HA pair share in the
// datastore's KV — dynamic federation relationships, static bundles, the CA
// authorities, the JWT keys — changed on server A takes effect on server B,
// and reaches B's agent, within sharedStateBound. B re-reads that state on
// its own only every 10 s (federation) and every 30 s (CA and JWT keys:
// min(lifetime/50, 30 s) with the default week and day), from its start;
// each change below is made within seconds of B's start, so only the
// datastore's notification can make it in time.
func TestHASharedStateAtOnce(t *testing.T) {
	ds := postgresDatastore(t)
	env := testenv.New(t)
	a := env.StartServer(testenv.WithHCL(ds))
	b := env.StartServer(testenv.WithHCL(ds))
	bStarted := time.Now() // B's polls run from here on: federation at +10 s, keys at +30 s

	// within waits up to sharedStateBound for cond and logs how long it took.
	within := func(what string, cond func() bool) {
		t.Helper()
		start := time.Now()
		testenv.WaitFor(t, sharedStateBound, what, cond)
		t.Logf("%s: %s (%s after B started)", what, time.Since(start).Round(time.Millisecond), time.Since(bStarted).Round(time.Millisecond))
	}

	// A dynamic federation relationship created on A is B's too.
	a.MustCLI("federation", "create", "-trustDomain", "web.org", "-bundleEndpointURL", "https://127.0.0.1:1/bundle",
		"-bundleEndpointProfile", "https_web")
	within("B lists the relationship created on A", func() bool {
		out, err := b.CLI("federation", "list")
		return err == nil && strings.Contains(out, "web.org")
	})
	// A static bundle set on A is B's too.
	pemPath := filepath.Join(env.Dir, "static.pem")
	must(t, os.WriteFile(pemPath, staticCAPEM(t), 0o600))
	a.MustCLI("bundle", "set", "-id", "static.org", "-path", pemPath)
	within("B holds the static bundle set on A", func() bool {
		_, err := b.CLI("bundle", "list", "-id", "static.org")
		return err == nil
	})

	ag := env.StartAgent(b, b.Token())
	const id = "spiffe://example.org/ha/shared-state"
	a.CreateEntry(id, ag.ID(), "-selector", uidSelector())
	waitForSVID(t, ag.Addr(), id)

	// An X.509 authority prepared on A reaches the workloads of B's agent.
	mustLocalAuthority(t, env, a, "x509", "prepare")
	next := localAuthorities(t, env, a, "x509")["prepared"][0]
	td := spiffeid.RequireTrustDomainFromString(testenv.TrustDomain)
	within("the X.509 authority prepared on A in the bundle of B's agent", func() bool {
		b, err := fetch(t, ag.Addr()).Bundles.GetX509BundleForTrustDomain(td)
		return err == nil && bundleHas(b.X509Authorities(), next.GetSubjectKeyId())
	})
	// A JWT key prepared on A reaches B's agent.
	mustLocalAuthority(t, env, a, "jwt", "prepare")
	kid := localAuthorities(t, env, a, "jwt")["prepared"][0].GetAuthorityId()
	within("the JWT key prepared on A in the JWT bundle of B's agent", func() bool {
		_, ok := agentJWTBundle(t, ag.Addr()).FindJWTAuthority(kid)
		return ok
	})
	// And the relationship deleted on A is gone from B.
	a.MustCLI("federation", "delete", "-id", "web.org")
	within("B drops the relationship deleted on A", func() bool {
		out, err := b.CLI("federation", "list")
		return err == nil && !strings.Contains(out, "web.org")
	})
}

// staticCAPEM returns a self-signed P-256 CA certificate in PEM.
func staticCAPEM(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "static.org CA"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	must(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
