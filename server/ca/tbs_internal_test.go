package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

var tbsTD = spiffeid.RequireTrustDomainFromString("example.org")

// tbsUpstreamRoot is the root above the test upstream CA (set by tbsIssuers).
var tbsUpstreamRoot *x509.Certificate

// tbsIssuers are the CA kinds that sign SVIDs: self-signed roots and
// intermediates of an upstream CA (itself an intermediate), each with a
// P-256, P-384 and RSA key, valid from 1999 to 2120 so that every validity
// encoding fits inside. Built once: RSA keys are slow to make.
var tbsIssuers = sync.OnceValues(func() (map[string]*issuer, error) {
	from := time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC)
	ttl := time.Date(2120, 1, 1, 0, 0, 0, 0, time.UTC).Sub(from)
	out := map[string]*issuer{}
	upKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, err
	}
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	rootTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "upstream root", Organization: []string{"Corp"}},
		NotBefore: from, NotAfter: from.Add(ttl + time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		return nil, err
	}
	root, err := x509.ParseCertificate(rootDER)
	if err != nil {
		return nil, err
	}
	upTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "upstream intermediate é"},
		NotBefore: from, NotAfter: from.Add(ttl + time.Minute), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	upDER, err := x509.CreateCertificate(rand.Reader, upTmpl, root, upKey.Public(), rootKey)
	if err != nil {
		return nil, err
	}
	upCert, err := x509.ParseCertificate(upDER)
	if err != nil {
		return nil, err
	}
	tbsUpstreamRoot = root
	up := &upstream{signer: upKey, cert: upCert, chain: []*x509.Certificate{upCert}, roots: []*x509.Certificate{root}}
	for _, kt := range []string{KeyTypeECP256, KeyTypeECP384, KeyTypeRSA2048} {
		for _, u := range []*upstream{nil, up} {
			a, err := mint(tbsTD, kt, ttl, u, from.Add(time.Hour))
			if err != nil {
				return nil, err
			}
			name := kt + "/root"
			if u != nil {
				name = kt + "/intermediate"
			}
			out[name] = a
		}
	}
	return out, nil
})

// tbsLeafKeys are the subject keys of every type the CA accepts.
var tbsLeafKeys = sync.OnceValues(func() (map[string]crypto.PublicKey, error) {
	out := map[string]crypto.PublicKey{}
	for name, c := range map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384()} {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			return nil, err
		}
		out[name] = k.Public()
	}
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	out["Ed25519"] = pub
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	out["RSA-2048"] = k.Public()
	return out, nil
})

func issuersAndKeys(t testing.TB) (map[string]*issuer, map[string]crypto.PublicKey) {
	t.Helper()
	is, err := tbsIssuers()
	if err != nil {
		t.Fatal(err)
	}
	ks, err := tbsLeafKeys()
	if err != nil {
		t.Fatal(err)
	}
	return is, ks
}

// signBoth signs tmpl with the direct signer and with
// x509.CreateCertificate, and checks that the two certificates are the
// same up to the (randomised) signature: the same TBSCertificate byte for
// byte, the same outer encoding, and a signature that x509 and go-spiffe
// accept.
func signBoth(t testing.TB, a *issuer, tmpl *svidTemplate) {
	t.Helper()
	d, ok := directKeyOf(a.signer)
	if !ok {
		t.Fatalf("no direct signer for %T", a.signer)
	}
	spki, err := marshalSPKI(tmpl.pub)
	if err != nil {
		t.Fatal(err)
	}
	wantSPKI, err := x509.MarshalPKIXPublicKey(tmpl.pub)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(spki, wantSPKI) {
		t.Fatalf("SubjectPublicKeyInfo\n got %x\nwant %x", spki, wantSPKI)
	}
	tmpl.spki = spki
	ref, refErr := createWithStdlib(tmpl, a.cert, a.signer)
	got, gotErr := d.sign(tmpl, a.cert.RawSubject, a.cert.SubjectKeyId)
	if (refErr == nil) != (gotErr == nil) {
		t.Fatalf("x509.CreateCertificate error %v, direct signer error %v", refErr, gotErr)
	}
	if refErr != nil {
		return
	}
	want, err := x509.ParseCertificate(ref)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(got)
	if err != nil {
		t.Fatalf("parse direct certificate: %v\n%x", err, got)
	}
	if !bytes.Equal(cert.RawTBSCertificate, want.RawTBSCertificate) {
		t.Fatalf("TBSCertificate differs\n got %x\nwant %x", cert.RawTBSCertificate, want.RawTBSCertificate)
	}
	outer, err := asn1.Marshal(struct {
		TBS asn1.RawValue
		Alg pkix.AlgorithmIdentifier
		Sig asn1.BitString
	}{asn1.RawValue{FullBytes: want.RawTBSCertificate}, algorithmOf(t, ref), asn1.BitString{Bytes: cert.Signature, BitLength: 8 * len(cert.Signature)}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, outer) {
		t.Fatalf("certificate encoding differs from x509's\n got %x\nwant %x", got, outer)
	}
	if cert.SignatureAlgorithm != want.SignatureAlgorithm {
		t.Fatalf("signature algorithm %v, want %v", cert.SignatureAlgorithm, want.SignatureAlgorithm)
	}
	if err := cert.CheckSignatureFrom(a.cert); err != nil {
		t.Fatalf("signature: %v", err)
	}
	verifySVID(t, a, cert, tmpl)
}

// algorithmOf returns the outer signatureAlgorithm of a DER certificate.
func algorithmOf(t testing.TB, der []byte) pkix.AlgorithmIdentifier {
	t.Helper()
	var c struct {
		TBS asn1.RawValue
		Alg pkix.AlgorithmIdentifier
		Sig asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &c); err != nil {
		t.Fatal(err)
	}
	return c.Alg
}

// verifySVID checks cert as an X.509-SVID with go-spiffe, at a time
// inside its validity, against the bundle of a (its roots).
func verifySVID(t testing.TB, a *issuer, cert *x509.Certificate, tmpl *svidTemplate) {
	t.Helper()
	at := tmpl.notBefore.Add(tmpl.notAfter.Sub(tmpl.notBefore) / 2)
	if !at.After(a.cert.NotBefore) || !at.Before(a.cert.NotAfter) || tmpl.notAfter.Sub(tmpl.notBefore) < time.Second {
		return // outside the CA's validity: x509 verification would refuse the chain for that alone
	}
	roots := []*x509.Certificate{a.cert}
	if !a.root {
		roots = []*x509.Certificate{tbsUpstreamRoot}
	}
	chain := append([]*x509.Certificate{cert}, a.chain...)
	id, _, err := x509svid.Verify(chain, x509bundle.FromX509Authorities(tbsTD, roots), x509svid.WithTime(at))
	if err != nil {
		t.Fatalf("go-spiffe verification: %v", err)
	}
	if id != tmpl.id {
		t.Fatalf("go-spiffe verified %q, want %q", id, tmpl.id)
	}
}

// The direct signer writes the certificate x509.CreateCertificate writes,
// for every CA kind and key, subject key type, TTL, DNS name and SPIFFE ID
// shape.
func TestTBSMatchesStdlib(t *testing.T) {
	issuers, keys := issuersAndKeys(t)
	longPath := "/" + strings.Repeat("a", 2000)
	ids := []spiffeid.ID{
		spiffeid.RequireFromPath(tbsTD, "/w"),
		spiffeid.RequireFromPath(tbsTD, "/fleet/a1/w1"),
		spiffeid.RequireFromPath(tbsTD, "/ns/default/sa/web-front_end.v2"),
		spiffeid.RequireFromPath(tbsTD, longPath[:100]),
		spiffeid.RequireFromPath(tbsTD, longPath[:130]), // SAN crosses 128 bytes: long-form lengths
		spiffeid.RequireFromPath(tbsTD, longPath[:300]),
		spiffeid.RequireFromPath(tbsTD, longPath),
	}
	dnsSets := [][]string{
		nil,
		{"web"},
		{"web.example.org", "api.example.org"},
		{"*.example.org"}, // CN becomes a UTF8String, as x509 writes it
		{strings.Repeat("a", 63) + ".example.org"}, // too long for a CN
		{strings.Repeat("b", 64)},                  // exactly 64: still a CN
		manyNames(64),
	}
	base := time.Date(2031, time.March, 1, 12, 0, 0, 123456789, time.FixedZone("CET", 3600))
	validities := []struct{ from, to time.Time }{
		{base, base.Add(time.Second)},
		{base, base.Add(time.Hour)},
		{base.Add(-10 * time.Second), base.Add(24 * time.Hour)},
		{time.Date(2049, 12, 31, 23, 59, 59, 0, time.UTC), time.Date(2050, 1, 1, 0, 0, 0, 0, time.UTC)},
		{time.Date(2050, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2119, 6, 1, 0, 0, 0, 0, time.UTC)},
		{time.Date(1999, 6, 1, 0, 0, 0, 0, time.UTC), time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	serials := []*big.Int{big.NewInt(1), big.NewInt(127), big.NewInt(128), new(big.Int).Lsh(big.NewInt(1), 127), new(big.Int).Sub(serialLimit, big.NewInt(1))}
	n := 0
	for name, a := range issuers {
		if strings.HasPrefix(name, KeyTypeRSA2048) {
			continue
		}
		for keyName, pub := range keys {
			// Every ID shape and every DNS set, each with every validity
			// and serial shape in turn (not their product: signing is slow).
			for k := range len(ids) + len(dnsSets) {
				i, j := k%len(ids), (k/2)%len(dnsSets)
				id, dns := ids[i], dnsSets[j]
				v := validities[k%len(validities)]
				tmpl := &svidTemplate{serial: serials[(i+j+n)%len(serials)], notBefore: v.from, notAfter: v.to,
					keyUsage: x509.KeyUsageDigitalSignature, id: id, pub: pub, dnsNames: dns}
				if _, ok := pub.(*rsa.PublicKey); ok {
					tmpl.keyUsage |= x509.KeyUsageKeyEncipherment
				}
				if len(dns) > 0 && len(dns[0]) <= maxCNLen {
					tmpl.commonName = dns[0]
				}
				t.Run(fmt.Sprintf("%s/%s/id%d/dns%d", name, keyName, i, j), func(t *testing.T) { signBoth(t, a, tmpl) })
				n++
			}
		}
	}
	t.Logf("%d certificates compared", n)
}

func manyNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("host-%d.svc.cluster.local", i)
	}
	return out
}

// issue (clamping to the CA's validity, the subject's CN, the key usage)
// takes the direct path for ECDSA CA keys and keeps x509.CreateCertificate
// for RSA ones; both give the certificate CreateCertificate gives.
func TestIssueDirectPath(t *testing.T) {
	issuers, keys := issuersAndKeys(t)
	for name, a := range issuers {
		t.Run(name, func(t *testing.T) {
			if _, got := directKeyOf(a.signer); got == strings.HasPrefix(name, KeyTypeRSA2048) {
				t.Fatalf("direct signer for %s: %v", name, got)
			}
			now := a.cert.NotAfter.Add(-90 * time.Minute)
			for keyName, pub := range keys {
				for _, ttl := range []time.Duration{time.Second, time.Hour, 48 * time.Hour} {
					p := X509SVIDParams{ID: spiffeid.RequireFromPath(tbsTD, "/svc/"+keyName), PublicKey: pub, TTL: ttl,
						DNSNames: []string{"svc.example.org", "*.svc.example.org"}}
					tmpl, der, err := issue(a, now, p, true)
					if err != nil {
						t.Fatal(err)
					}
					if !tmpl.notAfter.Equal(now.Add(ttl)) && !tmpl.notAfter.Equal(a.cert.NotAfter) {
						t.Fatalf("notAfter %s", tmpl.notAfter)
					}
					cert, err := x509.ParseCertificate(der)
					if err != nil {
						t.Fatal(err)
					}
					ref, err := createWithStdlib(tmpl, a.cert, a.signer)
					if err != nil {
						t.Fatal(err)
					}
					want, err := x509.ParseCertificate(ref)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(cert.RawTBSCertificate, want.RawTBSCertificate) {
						t.Fatalf("TBSCertificate differs\n got %x\nwant %x", cert.RawTBSCertificate, want.RawTBSCertificate)
					}
					if err := cert.CheckSignatureFrom(a.cert); err != nil {
						t.Fatal(err)
					}
					if cert.Subject.CommonName != "svc.example.org" || len(cert.DNSNames) != 2 {
						t.Fatalf("subject %s, DNS names %q", cert.Subject, cert.DNSNames)
					}
					verifySVID(t, a, cert, tmpl)
				}
			}
		})
	}
}

// FuzzTBSMatchesStdlib compares the direct encoder with
// x509.CreateCertificate over fuzzed serials, validity times (every year
// 0–9999 and beyond, so UTCTime and GeneralizedTime and the refusals),
// subject common names, DNS names (any bytes: non-ASCII ones are refused
// by both) and SPIFFE ID paths.
func FuzzTBSMatchesStdlib(f *testing.F) {
	f.Add([]byte{1}, int64(1900000000), int64(3600), "web.example.org", "web.example.org", "/w", false)
	f.Add([]byte{0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, int64(2524607999), int64(1), "", "", "/a/b/c", true)
	f.Add([]byte{0xff}, int64(2524608000), int64(86400*365*60), "*.x", "*.x,y", "/ns/default/sa/web", false)
	f.Add([]byte{}, int64(-631152001), int64(10), "caf\xc3\xa9", "a,b,c", "/"+strings.Repeat("p", 200), true)
	f.Add([]byte{7}, int64(253402300799), int64(1), "\xff", "h\xc3\xa9", "/x", false)
	f.Add([]byte{42}, int64(-62167219201), int64(5), "a&b", "a b,", "/y", true)
	is, err := tbsIssuers()
	if err != nil {
		f.Fatal(err)
	}
	ks, err := tbsLeafKeys()
	if err != nil {
		f.Fatal(err)
	}
	p256, p384 := is[KeyTypeECP256+"/root"], is[KeyTypeECP384+"/intermediate"]
	pub := ks["P-256"]
	f.Fuzz(func(t *testing.T, serial []byte, from, ttl int64, cn, dns, path string, p384CA bool) {
		if len(serial) > 64 || len(dns) > 4096 || len(cn) > 256 {
			return
		}
		id, err := spiffeid.FromPath(tbsTD, path)
		if err != nil || id.Path() == "" {
			return
		}
		var names []string
		if dns != "" {
			names = strings.Split(dns, ",")
		}
		notBefore := time.Unix(from, 0)
		tmpl := &svidTemplate{serial: new(big.Int).SetBytes(serial), notBefore: notBefore, notAfter: notBefore.Add(time.Duration(ttl) * time.Second),
			keyUsage: x509.KeyUsageDigitalSignature, commonName: cn, dnsNames: names, id: id, pub: pub}
		a := p256
		if p384CA {
			a = p384
		}
		signBoth(t, a, tmpl)
	})
}
