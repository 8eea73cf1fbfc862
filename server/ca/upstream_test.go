package ca_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/hallmarkid/hallmark/server/ca"
)

// corpCA is a certificate and key standing in for an existing corporate CA.
type corpCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// certOpts shape a test CA certificate.
type certOpts struct {
	cn         string
	notBefore  time.Time
	notAfter   time.Time
	isCA       bool
	noCA       bool // BasicConstraints absent
	pathLen0   bool
	keyUsage   x509.KeyUsage
	parent     *corpCA // nil: self-signed
	subjectKey crypto.Signer
}

func makeCert(t testing.TB, o certOpts) *corpCA {
	t.Helper()
	if o.notBefore.IsZero() {
		o.notBefore = t0.Add(-24 * time.Hour)
	}
	if o.notAfter.IsZero() {
		o.notAfter = t0.Add(365 * 24 * time.Hour)
	}
	if o.keyUsage == 0 {
		o.keyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{Organization: []string{"Corp"}, CommonName: o.cn},
		NotBefore:             o.notBefore,
		NotAfter:              o.notAfter,
		KeyUsage:              o.keyUsage,
		BasicConstraintsValid: !o.noCA,
		IsCA:                  !o.noCA && o.isCA,
		MaxPathLenZero:        o.pathLen0,
	}
	if !o.isCA {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	}
	parent, signer := tmpl, o.subjectKey
	if o.parent != nil {
		parent, signer = o.parent.cert, o.parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, o.subjectKey.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &corpCA{cert: cert, key: o.subjectKey}
}

func certsPEM(certs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

func keyPEM(t testing.TB, k crypto.Signer, format string) []byte {
	t.Helper()
	var block *pem.Block
	switch format {
	case "pkcs1":
		block = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k.(*rsa.PrivateKey))}
	case "sec1":
		der, err := x509.MarshalECPrivateKey(k.(*ecdsa.PrivateKey))
		if err != nil {
			t.Fatal(err)
		}
		block = &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}
	default:
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		block = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	}
	return pem.EncodeToMemory(block)
}

// upstreamFiles writes the upstream files into a fresh directory.
type upstreamFiles struct {
	cert, key, bundle []byte // bundle nil: no bundle file
	keyMode           os.FileMode
}

func (u upstreamFiles) write(t testing.TB) (certPath, keyPath, bundlePath string) {
	t.Helper()
	d := t.TempDir()
	certPath, keyPath = filepath.Join(d, "up.crt"), filepath.Join(d, "up.key")
	writeMode(t, certPath, u.cert, 0o644)
	mode := u.keyMode
	if mode == 0 {
		mode = 0o600
	}
	writeMode(t, keyPath, u.key, mode)
	if u.bundle != nil {
		bundlePath = filepath.Join(d, "roots.pem")
		writeMode(t, bundlePath, u.bundle, 0o644)
	}
	return certPath, keyPath, bundlePath
}

func upstreamCA(t testing.TB, dir string, clk *fixedClock, ttl time.Duration, u upstreamFiles) (*ca.CA, error) {
	t.Helper()
	c, k, b := u.write(t)
	return ca.New(ca.Config{TrustDomain: td, Dir: dir, Clock: clk.Now, TTL: ttl,
		UpstreamCertPath: c, UpstreamKeyPath: k, UpstreamBundlePath: b})
}

// checkUpstreamSVID signs an SVID and checks that its chain is [leaf,
// intermediate, wantExtra...] and verifies against root with x509 and
// with go-spiffe against Bundle.
func checkUpstreamSVID(t *testing.T, c *ca.CA, root *x509.Certificate, now time.Time, wantExtra ...*x509.Certificate) []*x509.Certificate {
	t.Helper()
	chain, err := c.SignX509SVID(t.Context(), ca.X509SVIDParams{ID: wlID, PublicKey: ecKey(t, elliptic.P256()).Public(), TTL: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 2+len(wantExtra) || !chain[1].Equal(c.Certificate()) {
		t.Fatalf("chain has %d certificates (want %d) or its second is not the active intermediate", len(chain), 2+len(wantExtra))
	}
	for i, w := range wantExtra {
		if !chain[2+i].Equal(w) {
			t.Errorf("chain[%d] = %q, want %q", 2+i, chain[2+i].Subject, w.Subject)
		}
	}
	if !chain[len(chain)-1].Equal(root) && slices.ContainsFunc(chain, root.Equal) {
		t.Error("the root is in the chain")
	}
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	for _, ic := range chain[1:] {
		inters.AddCert(ic)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("x509 verify against the upstream root: %v", err)
	}
	if _, _, err := x509svid.Verify(chain, x509bundle.FromX509Authorities(td, c.Bundle()), x509svid.WithTime(now)); err != nil {
		t.Fatalf("x509svid.Verify against Bundle(): %v", err)
	}
	return chain
}

func TestUpstreamChains(t *testing.T) {
	rootEC := makeCert(t, certOpts{cn: "Corp Root EC", isCA: true, subjectKey: ecKey(t, elliptic.P256())})
	rootRSA := makeCert(t, certOpts{cn: "Corp Root RSA", isCA: true, subjectKey: rsaKey(t, 2048)})
	rootP384 := makeCert(t, certOpts{cn: "Corp Root P-384", isCA: true, subjectKey: ecKey(t, elliptic.P384())})
	corpInter := makeCert(t, certOpts{cn: "Corp Issuing CA", isCA: true, parent: rootEC, subjectKey: ecKey(t, elliptic.P256())})
	corpInter2 := makeCert(t, certOpts{cn: "Corp Issuing CA 2", isCA: true, parent: corpInter, subjectKey: rsaKey(t, 2048)})
	tests := []struct {
		name      string
		files     upstreamFiles
		root      *x509.Certificate
		wantExtra []*x509.Certificate
	}{
		{name: "EC root, PKCS#8 key", root: rootEC.cert,
			files: upstreamFiles{cert: certsPEM(rootEC.cert), key: keyPEM(t, rootEC.key, "pkcs8")}},
		{name: "RSA root, PKCS#1 key", root: rootRSA.cert,
			files: upstreamFiles{cert: certsPEM(rootRSA.cert), key: keyPEM(t, rootRSA.key, "pkcs1")}},
		{name: "P-384 root, SEC1 key", root: rootP384.cert,
			files: upstreamFiles{cert: certsPEM(rootP384.cert), key: keyPEM(t, rootP384.key, "sec1")}},
		{name: "issuing CA, chain file ends with the root", root: rootEC.cert, wantExtra: []*x509.Certificate{corpInter.cert},
			files: upstreamFiles{cert: certsPEM(corpInter.cert, rootEC.cert), key: keyPEM(t, corpInter.key, "sec1")}},
		{name: "issuing CA, root in a bundle file", root: rootEC.cert, wantExtra: []*x509.Certificate{corpInter.cert},
			files: upstreamFiles{cert: certsPEM(corpInter.cert), key: keyPEM(t, corpInter.key, "pkcs8"), bundle: certsPEM(rootEC.cert)}},
		{name: "two issuing CAs, RSA under EC", root: rootEC.cert, wantExtra: []*x509.Certificate{corpInter2.cert, corpInter.cert},
			files: upstreamFiles{cert: certsPEM(corpInter2.cert, corpInter.cert), key: keyPEM(t, corpInter2.key, "pkcs1"), bundle: certsPEM(rootEC.cert)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &fixedClock{now: t0}
			c, err := upstreamCA(t, filepath.Join(t.TempDir(), "ca"), clk, time.Hour, tt.files)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if b := c.Bundle(); len(b) != 1 || !b[0].Equal(tt.root) {
				t.Fatalf("Bundle() = %d certificates, want the upstream root only", len(b))
			}
			inter := c.Certificate()
			if !inter.BasicConstraintsValid || !inter.IsCA || inter.MaxPathLen != 0 || !inter.MaxPathLenZero {
				t.Errorf("intermediate: CA=%v pathlen=%d zero=%v, want CA with path length 0", inter.IsCA, inter.MaxPathLen, inter.MaxPathLenZero)
			}
			if len(inter.URIs) != 1 || inter.URIs[0].String() != "spiffe://example.org" {
				t.Errorf("intermediate URIs = %v", inter.URIs)
			}
			if inter.KeyUsage&x509.KeyUsageCertSign == 0 {
				t.Error("intermediate lacks certSign")
			}
			issuer := tt.root
			if len(tt.wantExtra) > 0 {
				issuer = tt.wantExtra[0]
			}
			if err := inter.CheckSignatureFrom(issuer); err != nil {
				t.Errorf("intermediate not signed by the upstream CA: %v", err)
			}
			if !inter.NotAfter.Equal(t0.Add(time.Hour)) {
				t.Errorf("intermediate NotAfter = %s, want now+TTL", inter.NotAfter)
			}
			checkUpstreamSVID(t, c, tt.root, t0, tt.wantExtra...)
		})
	}
}

// TestUpstreamRotation: intermediates rotate on the same schedule; the
// bundle (the upstream root) does not change, and SVIDs from every
// intermediate verify against it.
func TestUpstreamRotation(t *testing.T) {
	root := makeCert(t, certOpts{cn: "Corp Root", isCA: true, subjectKey: ecKey(t, elliptic.P256())})
	clk := &fixedClock{now: t0}
	dir := filepath.Join(t.TempDir(), "ca")
	files := upstreamFiles{cert: certsPEM(root.cert), key: keyPEM(t, root.key, "pkcs8")}
	c, err := upstreamCA(t, dir, clk, time.Hour, files)
	if err != nil {
		t.Fatal(err)
	}
	seq := c.BundleSequence()
	ch := c.BundleChanged()
	var chains [][]*x509.Certificate
	inters := map[string]bool{}
	for step := range 4 * 60 {
		now := t0.Add(time.Duration(step) * time.Minute)
		clk.Set(now)
		if err := c.Rotate(t.Context()); err != nil {
			t.Fatal(err)
		}
		inters[skid(c.Certificate())] = true
		chains = append(chains, checkUpstreamSVID(t, c, root.cert, now))
		for i, chain := range chains {
			if !now.Before(chain[0].NotAfter) {
				continue
			}
			if _, _, err := x509svid.Verify(chain, x509bundle.FromX509Authorities(td, c.Bundle()), x509svid.WithTime(now)); err != nil {
				t.Fatalf("step %d: SVID of step %d: %v", step, i, err)
			}
		}
	}
	if len(inters) < 5 {
		t.Fatalf("%d intermediates in four hours, want at least 5", len(inters))
	}
	if c.BundleSequence() != seq || closed(ch) {
		t.Error("the bundle changed although the upstream root did not")
	}
	// A restart keeps the active intermediate.
	active := c.Certificate()
	c2, err := upstreamCA(t, dir, clk, time.Hour, files)
	if err != nil {
		t.Fatal(err)
	}
	if !c2.Certificate().Equal(active) {
		t.Fatal("restart changed the active intermediate")
	}
}

// TestUpstreamExpiresFirst: intermediates never outlive the upstream CA,
// and rotation stops (with a warning) when a new one could not outlive the
// active one.
func TestUpstreamExpiresFirst(t *testing.T) {
	root := makeCert(t, certOpts{cn: "Corp Root", isCA: true, subjectKey: ecKey(t, elliptic.P256()), notAfter: t0.Add(30 * time.Minute)})
	clk := &fixedClock{now: t0}
	log, buf := logBuffer()
	cp, kp, _ := upstreamFiles{cert: certsPEM(root.cert), key: keyPEM(t, root.key, "pkcs8")}.write(t)
	c, err := ca.New(ca.Config{TrustDomain: td, Dir: filepath.Join(t.TempDir(), "ca"), Clock: clk.Now, TTL: time.Hour,
		UpstreamCertPath: cp, UpstreamKeyPath: kp, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Certificate().NotAfter.Equal(root.cert.NotAfter) {
		t.Fatalf("intermediate NotAfter %s, want the upstream's %s", c.Certificate().NotAfter, root.cert.NotAfter)
	}
	active := c.Certificate()
	clk.Set(t0.Add(20 * time.Minute))
	if err := c.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !c.Certificate().Equal(active) {
		t.Fatal("rotated to an intermediate that cannot outlive the active one")
	}
	if !strings.Contains(buf.String(), "upstream CA certificate expires no later than the active intermediate") {
		t.Errorf("no warning: %s", buf.String())
	}
	chain := checkUpstreamSVID(t, c, root.cert, clk.Now())
	if chain[0].NotAfter.After(root.cert.NotAfter) {
		t.Error("leaf outlives the upstream CA")
	}
}

func TestUpstreamRejects(t *testing.T) {
	ec := ecKey(t, elliptic.P256())
	root := makeCert(t, certOpts{cn: "Corp Root", isCA: true, subjectKey: ec})
	otherRoot := makeCert(t, certOpts{cn: "Other Root", isCA: true, subjectKey: ecKey(t, elliptic.P256())})
	issuing := makeCert(t, certOpts{cn: "Corp Issuing", isCA: true, parent: root, subjectKey: ecKey(t, elliptic.P256())})
	leafKey := ecKey(t, elliptic.P256())
	leaf := makeCert(t, certOpts{cn: "server.corp", parent: root, subjectKey: leafKey})
	noBC := makeCert(t, certOpts{cn: "no basic constraints", noCA: true, isCA: true, subjectKey: ec})
	expired := makeCert(t, certOpts{cn: "expired", isCA: true, subjectKey: ec, notBefore: t0.Add(-48 * time.Hour), notAfter: t0.Add(-time.Hour)})
	future := makeCert(t, certOpts{cn: "future", isCA: true, subjectKey: ec, notBefore: t0.Add(time.Hour)})
	pathLen0 := makeCert(t, certOpts{cn: "pathlen 0", isCA: true, pathLen0: true, subjectKey: ec})
	noCertSign := makeCert(t, certOpts{cn: "no certSign", isCA: true, keyUsage: x509.KeyUsageDigitalSignature, subjectKey: ec})
	p521 := makeCert(t, certOpts{cn: "P-521", isCA: true, subjectKey: ecKey(t, elliptic.P521())})
	ed := edKey(t)
	edRoot := makeCert(t, certOpts{cn: "Ed25519", isCA: true, subjectKey: ed})
	rsa1024 := rsaKey(t, 1024)
	rsaSmall := makeCert(t, certOpts{cn: "RSA-1024", isCA: true, subjectKey: rsa1024})
	encrypted := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00"}, Bytes: []byte{1, 2, 3}})

	good := keyPEM(t, ec, "pkcs8")
	tests := []struct {
		name    string
		files   upstreamFiles
		cfg     func(*ca.Config) // applied after the paths are set
		wantErr string
	}{
		{name: "leaf certificate", files: upstreamFiles{cert: certsPEM(leaf.cert, root.cert), key: keyPEM(t, leafKey, "pkcs8")}, wantErr: "is not a CA certificate"},
		{name: "no basic constraints", files: upstreamFiles{cert: certsPEM(noBC.cert), key: good}, wantErr: "is not a CA certificate"},
		{name: "key of another CA", files: upstreamFiles{cert: certsPEM(otherRoot.cert), key: good}, wantErr: "does not match the key file"},
		{name: "expired", files: upstreamFiles{cert: certsPEM(expired.cert), key: good}, wantErr: "expired at"},
		{name: "not yet valid", files: upstreamFiles{cert: certsPEM(future.cert), key: good}, wantErr: "is not valid until"},
		{name: "path length 0", files: upstreamFiles{cert: certsPEM(pathLen0.cert), key: good}, wantErr: "path length 0"},
		{name: "no keyCertSign", files: upstreamFiles{cert: certsPEM(noCertSign.cert), key: good}, wantErr: "lacks the keyCertSign"},
		{name: "Ed25519 key", files: upstreamFiles{cert: certsPEM(edRoot.cert), key: keyPEM(t, ed, "pkcs8")}, wantErr: "unsupported CA key type"},
		{name: "P-521 key", files: upstreamFiles{cert: certsPEM(p521.cert), key: keyPEM(t, p521.key, "sec1")}, wantErr: "unsupported CA key curve P-521"},
		{name: "RSA-1024 key", files: upstreamFiles{cert: certsPEM(rsaSmall.cert), key: keyPEM(t, rsa1024, "pkcs1")}, wantErr: "unsupported CA RSA key size 1024"},
		{name: "key mode 0644", files: upstreamFiles{cert: certsPEM(root.cert), key: good, keyMode: 0o644}, wantErr: "has mode 0644"},
		{name: "encrypted key", files: upstreamFiles{cert: certsPEM(root.cert), key: encrypted}, wantErr: "encrypted keys are not supported"},
		{name: "key garbage", files: upstreamFiles{cert: certsPEM(root.cert), key: []byte("hello")}, wantErr: "no PEM block"},
		{name: "key is a certificate", files: upstreamFiles{cert: certsPEM(root.cert), key: certsPEM(root.cert)}, wantErr: `PEM block is "CERTIFICATE", want a private key`},
		{name: "key trailing data", files: upstreamFiles{cert: certsPEM(root.cert), key: append(bytes.Clone(good), "junk"...)}, wantErr: "unexpected data after the PEM block"},
		{name: "certificate garbage", files: upstreamFiles{cert: []byte("hello"), key: good}, wantErr: "no PEM certificate found"},
		{name: "certificate file holds a key", files: upstreamFiles{cert: good, key: good}, wantErr: `PEM block 1 is "PRIVATE KEY"`},
		{name: "certificate DER corrupt", files: upstreamFiles{cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 1, 2}}), key: good}, wantErr: "certificate 1:"},
		{name: "no root and no bundle", files: upstreamFiles{cert: certsPEM(issuing.cert), key: keyPEM(t, issuing.key, "pkcs8")}, wantErr: "holds no self-signed root"},
		{name: "bundle of another root", files: upstreamFiles{cert: certsPEM(issuing.cert), key: keyPEM(t, issuing.key, "pkcs8"), bundle: certsPEM(otherRoot.cert)}, wantErr: "does not chain to the upstream trust anchors"},
		{name: "bundle holds a leaf", files: upstreamFiles{cert: certsPEM(root.cert), key: good, bundle: certsPEM(leaf.cert)}, wantErr: "is not a CA certificate"},
		{name: "bundle garbage", files: upstreamFiles{cert: certsPEM(root.cert), key: good, bundle: []byte("x")}, wantErr: "upstream bundle file"},
		{name: "key path only", files: upstreamFiles{cert: certsPEM(root.cert), key: good}, cfg: func(c *ca.Config) { c.UpstreamCertPath = "" }, wantErr: "both the certificate and the key file are required"},
		{name: "bundle path only", files: upstreamFiles{cert: certsPEM(root.cert), key: good}, cfg: func(c *ca.Config) { c.UpstreamCertPath, c.UpstreamKeyPath = "", "" }, wantErr: "both the certificate and the key file are required"},
		{name: "missing key file", files: upstreamFiles{cert: certsPEM(root.cert), key: good}, cfg: func(c *ca.Config) { c.UpstreamKeyPath += ".missing" }, wantErr: "no such file"},
		{name: "missing certificate file", files: upstreamFiles{cert: certsPEM(root.cert), key: good}, cfg: func(c *ca.Config) { c.UpstreamCertPath += ".missing" }, wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cp, kp, bp := tt.files.write(t)
			if tt.name == "bundle path only" {
				bp = cp
			}
			dir := filepath.Join(t.TempDir(), "ca")
			cfg := ca.Config{TrustDomain: td, Dir: dir, Clock: func() time.Time { return t0 },
				UpstreamCertPath: cp, UpstreamKeyPath: kp, UpstreamBundlePath: bp}
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			_, err := ca.New(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New() error = %v, want %q", err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "ca: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 0 {
				t.Errorf("a rejected upstream left %d files in Dir", len(entries))
			}
		})
	}
}

// TestUpstreamModeChanges: switching a CA to an upstream keeps its own root
// trusted until it expires; switching upstreams or back replaces the
// intermediates at once.
func TestUpstreamModeChanges(t *testing.T) {
	root := makeCert(t, certOpts{cn: "Corp Root", isCA: true, subjectKey: ecKey(t, elliptic.P256())})
	root2 := makeCert(t, certOpts{cn: "Corp Root 2", isCA: true, subjectKey: ecKey(t, elliptic.P256())})
	clk := &fixedClock{now: t0}
	dir := filepath.Join(t.TempDir(), "ca")
	self, err := ca.New(ca.Config{TrustDomain: td, Dir: dir, Clock: clk.Now, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ownRoot := self.Certificate()
	old, err := self.SignX509SVID(t.Context(), ca.X509SVIDParams{ID: wlID, PublicKey: ecKey(t, elliptic.P256()).Public(), TTL: 30 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}

	clk.Set(t0.Add(time.Minute))
	up, err := upstreamCA(t, dir, clk, time.Hour, upstreamFiles{cert: certsPEM(root.cert), key: keyPEM(t, root.key, "pkcs8")})
	if err != nil {
		t.Fatal(err)
	}
	if up.Certificate().Equal(ownRoot) || up.Certificate().CheckSignatureFrom(root.cert) != nil {
		t.Fatal("the active authority is not an intermediate of the upstream")
	}
	if got := bundleIDs(up.Bundle()); !slices.Equal(got, bundleIDs([]*x509.Certificate{root.cert, ownRoot})) {
		t.Fatalf("bundle %v, want the upstream root and the former own root", got)
	}
	if _, _, err := x509svid.Verify(old, x509bundle.FromX509Authorities(td, up.Bundle()), x509svid.WithTime(clk.Now())); err != nil {
		t.Fatalf("SVID from the former root stopped verifying: %v", err)
	}
	checkUpstreamSVID(t, up, root.cert, clk.Now())
	clk.Set(ownRoot.NotAfter)
	if err := up.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if b := up.Bundle(); len(b) != 1 || !b[0].Equal(root.cert) {
		t.Fatalf("after the former root expired the bundle holds %d", len(b))
	}

	// Another upstream: the intermediates of the first are dropped.
	up2, err := upstreamCA(t, dir, clk, time.Hour, upstreamFiles{cert: certsPEM(root2.cert), key: keyPEM(t, root2.key, "pkcs8")})
	if err != nil {
		t.Fatal(err)
	}
	checkUpstreamSVID(t, up2, root2.cert, clk.Now())

	// And back to a self-signed root.
	back, err := ca.New(ca.Config{TrustDomain: td, Dir: dir, Clock: clk.Now, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if b := back.Bundle(); len(b) != 1 || !b[0].Equal(back.Certificate()) || !isSelfSigned(back.Certificate()) {
		t.Fatal("back to self-signed: the bundle is not the new root")
	}
}

func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

// FuzzParseCertsPEM: the upstream certificate and bundle files are parsed
// without panics, and a success always yields certificates.
func FuzzParseCertsPEM(f *testing.F) {
	root := makeCert(f, certOpts{cn: "Corp Root", isCA: true, subjectKey: ecKey(f, elliptic.P256())})
	good := certsPEM(root.cert, root.cert)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(append(bytes.Clone(good), "junk"...))
	f.Add(keyPEM(f, root.key, "pkcs8"))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := ca.ParseCertsPEM(data)
		if err == nil && n == 0 {
			t.Fatal("success without certificates")
		}
	})
}
