package awsiid_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"os"
	"testing"
	"time"
)

// Signing test documents like AWS does: PKCS#7 SignedData, SHA-256 with
// RSA, signed attributes, BER with indefinite lengths and a chunked
// constructed OCTET STRING for the embedded document.

var (
	oidData          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidSignedData    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidContentType   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	oidMessageDigest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	oidSigningTime   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 5}
	oidSHA256        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA1          = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidRSA           = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
)

func der(t testing.TB, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tlv(tag byte, parts ...[]byte) []byte {
	var c []byte
	for _, p := range parts {
		c = append(c, p...)
	}
	out := []byte{tag}
	switch l := len(c); {
	case l < 0x80:
		out = append(out, byte(l))
	case l < 0x100:
		out = append(out, 0x81, byte(l))
	default:
		out = append(out, 0x82, byte(l>>8), byte(l))
	}
	return append(out, c...)
}

// indef encodes a constructed element with indefinite length.
func indef(tag byte, parts ...[]byte) []byte {
	out := []byte{tag, 0x80}
	for _, p := range parts {
		out = append(out, p...)
	}
	return append(out, 0, 0)
}

type p7opts struct {
	der          bool // definite lengths only
	noAttrs      bool // sign the content directly
	digestAlg    asn1.ObjectIdentifier
	attrsContent []byte // content whose digest goes into the attributes
	signers      int
	tail         []byte
}

func algID(t testing.TB, oid asn1.ObjectIdentifier) []byte {
	return tlv(0x30, der(t, oid), []byte{0x05, 0x00})
}

func signPKCS7(t testing.TB, content []byte, key *rsa.PrivateKey, cert *x509.Certificate, o p7opts) []byte {
	t.Helper()
	if o.digestAlg == nil {
		o.digestAlg = oidSHA256
	}
	if o.attrsContent == nil {
		o.attrsContent = content
	}
	if o.signers == 0 {
		o.signers = 1
	}
	md := sha256.Sum256(o.attrsContent)
	attrs := tlv(0xa0,
		tlv(0x30, der(t, oidContentType), tlv(0x31, der(t, oidData))),
		tlv(0x30, der(t, oidSigningTime), tlv(0x31, der(t, time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)))),
		tlv(0x30, der(t, oidMessageDigest), tlv(0x31, der(t, md[:]))),
	)
	signed := content
	if !o.noAttrs {
		signed = append([]byte{0x31}, attrs[1:]...)
	}
	h := sha256.Sum256(signed)
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, h[:])
	if err != nil {
		t.Fatal(err)
	}
	sid := tlv(0x30, cert.RawIssuer, der(t, cert.SerialNumber))
	si := [][]byte{der(t, 1), sid, algID(t, o.digestAlg)}
	if !o.noAttrs {
		si = append(si, attrs)
	}
	si = append(si, algID(t, oidRSA), tlv(0x04, sig))
	signer := tlv(0x30, si...)
	var signers [][]byte
	for range o.signers {
		signers = append(signers, signer)
	}
	digestAlgs := tlv(0x31, algID(t, o.digestAlg))
	var out []byte
	if o.der {
		encap := tlv(0x30, der(t, oidData), tlv(0xa0, tlv(0x04, content)))
		sd := tlv(0x30, der(t, 1), digestAlgs, encap, tlv(0x31, signers...))
		out = tlv(0x30, der(t, oidSignedData), tlv(0xa0, sd))
	} else {
		half := len(content) / 2
		octets := indef(0x24, tlv(0x04, content[:half]), tlv(0x04, content[half:]))
		encap := indef(0x30, der(t, oidData), indef(0xa0, octets))
		sd := indef(0x30, der(t, 1), digestAlgs, encap, tlv(0x31, signers...))
		out = indef(0x30, der(t, oidSignedData), indef(0xa0, sd))
	}
	return append(out, o.tail...)
}

func signRSA1024(t testing.TB, doc []byte, key *rsa.PrivateKey) []byte {
	h := sha256.Sum256(doc)
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, h[:])
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// testKeys returns the four RSA test keys in testdata (2048, 2048, 1024,
// 1024 bits): fixed keys keep tests and fuzz workers fast.
func testKeys(t testing.TB) []*rsa.PrivateKey {
	t.Helper()
	b, err := os.ReadFile("testdata/test-rsa-keys.pem")
	if err != nil {
		t.Fatal(err)
	}
	var keys []*rsa.PrivateKey
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			break
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.(*rsa.PrivateKey))
	}
	if len(keys) != 4 {
		t.Fatalf("%d test keys", len(keys))
	}
	return keys
}

func selfSigned(t testing.TB, key *rsa.PrivateKey, cn string) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"Amazon Web Services LLC"}},
		NotBefore:    time.Date(2019, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), // expired: only the key matters
	}
	b, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
