package test

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/hallmarkid/hallmark/test/testenv"
)

// TestMintSVIDs: SPIRE's `x509 mint` and `jwt mint` against the real
// server. The minted X.509-SVID chains to `bundle show` and names only the
// requested ID and DNS name; the key stays with the CLI (0600). Minting an
// ID in the reserved namespaces — the server's own (which agents trust as
// the server) or an agent's — is refused.
func TestMintSVIDs(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer()
	dir := filepath.Join(env.Dir, "mint")
	must(t, os.MkdirAll(dir, 0o700))

	out := srv.MustCLI("x509", "mint", "-spiffeID", "spiffe://example.org/minted", "-dns", "minted.example.org", "-ttl", "10m", "-write", dir)
	if !strings.Contains(out, "X509-SVID written to") {
		t.Fatalf("x509 mint -write:\n%s", out)
	}
	read := func(name string) []*x509.Certificate {
		b, err := os.ReadFile(filepath.Join(dir, name))
		must(t, err)
		var certs []*x509.Certificate
		for blk, rest := pem.Decode(b); blk != nil; blk, rest = pem.Decode(rest) {
			c, err := x509.ParseCertificate(blk.Bytes)
			must(t, err)
			certs = append(certs, c)
		}
		return certs
	}
	svid, bundle := read("svid.pem"), read("bundle.pem")
	roots := x509.NewCertPool()
	for _, c := range bundle {
		roots.AddCert(c)
	}
	inter := x509.NewCertPool()
	for _, c := range svid[1:] {
		inter.AddCert(c)
	}
	if _, err := svid[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("minted SVID does not chain to the bundle: %v", err)
	}
	if len(svid[0].URIs) != 1 || svid[0].URIs[0].String() != "spiffe://example.org/minted" || len(svid[0].DNSNames) != 1 {
		t.Fatalf("minted SVID names %v %v", svid[0].URIs, svid[0].DNSNames)
	}
	if st, err := os.Stat(filepath.Join(dir, "key.pem")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key.pem: %v %v", st, err)
	}

	var x struct {
		X509SVID   [][]byte `json:"x509_svid"`
		PrivateKey []byte   `json:"private_key"`
		RootCAs    [][]byte `json:"root_cas"`
	}
	must(t, json.Unmarshal([]byte(srv.MustCLI("x509", "mint", "-spiffeID", "spiffe://example.org/minted", "-output", "json")), &x))
	if len(x.X509SVID) == 0 || len(x.PrivateKey) == 0 || len(x.RootCAs) == 0 {
		t.Fatalf("x509 mint -output json: %+v", x)
	}

	tok := strings.TrimSpace(srv.MustCLI("jwt", "mint", "-spiffeID", "spiffe://example.org/minted", "-audience", "aud1"))
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256})
	must(t, err)
	var claims jwt.Claims
	must(t, parsed.UnsafeClaimsWithoutVerification(&claims))
	if claims.Subject != "spiffe://example.org/minted" || len(claims.Audience) != 1 || claims.Audience[0] != "aud1" {
		t.Fatalf("minted JWT claims %+v", claims)
	}

	for _, r := range []struct{ id, want string }{
		{"spiffe://example.org/hallmark/server", "reserved"},
		{"spiffe://example.org/agent/join_token/x", "reserved"},
		{"spiffe://other.org/w", "not in trust domain"},
		{"spiffe://example.org", "no path"},
	} {
		for _, args := range [][]string{{"x509", "mint"}, {"jwt", "mint", "-audience", "a"}} {
			if out, err := srv.CLI(append(args, "-spiffeID", r.id)...); err == nil || !strings.Contains(out, r.want) {
				t.Errorf("%v %s: err=%v, want a refusal naming %q:\n%s", args, r.id, err, r.want, out)
			}
		}
	}
	audit, err := os.ReadFile(filepath.Join(srv.Dir, "data", "audit.log"))
	must(t, err)
	if !strings.Contains(string(audit), `"x509_svid_mint"`) || !strings.Contains(string(audit), `"jwt_svid_mint"`) {
		t.Errorf("mints not audited")
	}
}
