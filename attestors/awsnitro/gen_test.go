package awsnitro_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// t0 is the fixed "now" of generated documents.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// testPKI is a root → intermediate → leaf chain like the NSM's, made here.
type testPKI struct {
	root, inter, leaf *x509.Certificate
	rootKey, interKey *ecdsa.PrivateKey
	leafKey           *ecdsa.PrivateKey
}

var serial int64

func newCert(t testing.TB, cn string, pub crypto.PublicKey, parent *x509.Certificate, parentKey crypto.Signer, ca bool, nb, na time.Time) *x509.Certificate {
	t.Helper()
	serial++
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             nb,
		NotAfter:              na,
		BasicConstraintsValid: true,
		IsCA:                  ca,
		KeyUsage:              x509.KeyUsageDigitalSignature,
	}
	if ca {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustKey(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	p := &testPKI{rootKey: mustKey(t, elliptic.P384()), interKey: mustKey(t, elliptic.P384()), leafKey: mustKey(t, elliptic.P384())}
	p.root = newCert(t, "test.nitro-enclaves", p.rootKey.Public(), nil, p.rootKey, true, t0.Add(-24*time.Hour), t0.Add(24*time.Hour))
	p.inter = newCert(t, "intermediate", p.interKey.Public(), p.root, p.rootKey, true, t0.Add(-24*time.Hour), t0.Add(24*time.Hour))
	p.leaf = newCert(t, "leaf", p.leafKey.Public(), p.inter, p.interKey, false, t0.Add(-time.Hour), t0.Add(3*time.Hour))
	return p
}

// kv is one payload map entry, in order; encoding stays under test control
// so that malformed maps (duplicates, indefinite length) can be produced.
type kv struct {
	k string
	v any
}

// spec describes a document to generate.
type spec struct {
	pairs       []kv
	alg         int64
	signer      *ecdsa.PrivateKey
	asn1Sig     bool
	indefMap    bool
	indefArray  bool
	tagged      bool
	payloadTail []byte
	docTail     []byte
	unprotected map[int64]any
}

func pcrs(fill byte) map[uint][]byte {
	m := map[uint][]byte{}
	for i := uint(0); i < 16; i++ {
		v := make([]byte, 48)
		if fill != 0 || i > 2 {
			for j := range v {
				v[j] = fill + byte(i)
			}
		}
		if i == 3 || i == 4 || i == 8 {
			v = make([]byte, 48)
		}
		m[i] = v
	}
	return m
}

// defaultSpec is a valid document for nonce and public key at ts.
func (p *testPKI) defaultSpec(nonce, pub []byte, ts time.Time) *spec {
	return &spec{
		alg:    -35,
		signer: p.leafKey,
		pairs: []kv{
			{"module_id", "i-0123456789abcdef0-enc0123456789abcdef"},
			{"digest", "SHA384"},
			{"timestamp", uint64(ts.UnixMilli())},
			{"pcrs", pcrs(0x10)},
			{"certificate", p.leaf.Raw},
			{"cabundle", [][]byte{p.root.Raw, p.inter.Raw}},
			{"public_key", pub},
			{"user_data", nil},
			{"nonce", nonce},
		},
	}
}

func (s *spec) set(k string, v any) *spec {
	for i := range s.pairs {
		if s.pairs[i].k == k {
			s.pairs[i].v = v
			return s
		}
	}
	s.pairs = append(s.pairs, kv{k, v})
	return s
}

func (s *spec) del(k string) *spec {
	for i := range s.pairs {
		if s.pairs[i].k == k {
			s.pairs = append(s.pairs[:i], s.pairs[i+1:]...)
			return s
		}
	}
	return s
}

func mustCBOR(t testing.TB, v any) []byte {
	t.Helper()
	em, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		t.Fatal(err)
	}
	b, err := em.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (s *spec) build(t testing.TB) []byte {
	t.Helper()
	var payload []byte
	if s.indefMap {
		payload = append(payload, 0xbf)
	} else {
		if len(s.pairs) >= 24 {
			t.Fatal("too many pairs")
		}
		payload = append(payload, 0xa0|byte(len(s.pairs)))
	}
	for _, p := range s.pairs {
		payload = append(payload, mustCBOR(t, p.k)...)
		payload = append(payload, mustCBOR(t, p.v)...)
	}
	if s.indefMap {
		payload = append(payload, 0xff)
	}
	payload = append(payload, s.payloadTail...)

	protected := mustCBOR(t, map[int64]int64{1: s.alg})
	sigStruct := mustCBOR(t, []any{"Signature1", protected, []byte{}, payload})
	h := sha512.Sum384(sigStruct)
	var sig []byte
	if s.asn1Sig {
		var err error
		if sig, err = ecdsa.SignASN1(rand.Reader, s.signer, h[:]); err != nil {
			t.Fatal(err)
		}
	} else {
		r, ss, err := ecdsa.Sign(rand.Reader, s.signer, h[:])
		if err != nil {
			t.Fatal(err)
		}
		sig = make([]byte, 96)
		r.FillBytes(sig[:48])
		ss.FillBytes(sig[48:])
	}
	unprot := s.unprotected
	if unprot == nil {
		unprot = map[int64]any{}
	}
	var doc []byte
	if s.tagged {
		doc = append(doc, 0xd2)
	}
	if s.indefArray {
		doc = append(doc, 0x9f)
	} else {
		doc = append(doc, 0x84)
	}
	for _, part := range []any{protected, unprot, payload, sig} {
		doc = append(doc, mustCBOR(t, part)...)
	}
	if s.indefArray {
		doc = append(doc, 0xff)
	}
	return append(doc, s.docTail...)
}

// softNSM signs documents like the NSM does, with a test PKI.
type softNSM struct {
	t   testing.TB
	pki *testPKI
	now func() time.Time
}

func (n *softNSM) Attest(nonce, userData, publicKey []byte) ([]byte, error) {
	s := n.pki.defaultSpec(nonce, publicKey, n.now())
	if userData != nil {
		s.set("user_data", userData)
	}
	return s.build(n.t), nil
}
