package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"time"
	"unicode/utf8"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// svidTemplate is everything an X.509-SVID carries, decided by
// SignX509SVID. It is written either by x509.CreateCertificate (through
// x509Template) or, for an in-process ECDSA CA key, by appendTBS, which
// writes the very bytes CreateCertificate writes for x509Template
// (TestTBSMatchesStdlib, FuzzTBSMatchesStdlib).
type svidTemplate struct {
	serial              *big.Int
	notBefore, notAfter time.Time
	commonName          string // empty: the Subject is O=Hallmark alone
	keyUsage            x509.KeyUsage
	dnsNames            []string
	id                  spiffeid.ID
	spki                []byte // DER SubjectPublicKeyInfo of the subject key
	pub                 crypto.PublicKey
}

// x509Template is t as a template for x509.CreateCertificate.
func (t *svidTemplate) x509Template(parent *x509.Certificate) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          t.serial,
		Subject:               pkix.Name{Organization: []string{Organization}, CommonName: t.commonName},
		NotBefore:             t.notBefore,
		NotAfter:              t.notAfter,
		KeyUsage:              t.keyUsage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		URIs:                  []*url.URL{t.id.URL()},
		DNSNames:              t.dnsNames,
		AuthorityKeyId:        parent.SubjectKeyId,
	}
}

// createWithStdlib signs t with x509.CreateCertificate, which checks the
// signature the signer returns: the path for every CA key but an
// in-process ECDSA one.
func createWithStdlib(t *svidTemplate, parent *x509.Certificate, signer crypto.Signer) ([]byte, error) {
	return x509.CreateCertificate(rand.Reader, t.x509Template(parent), parent, t.pub, signer)
}

// directKey is an in-process ECDSA CA key that signs certificates without
// x509.CreateCertificate: the hash of its curve's signature algorithm and
// that algorithm's DER AlgorithmIdentifier.
type directKey struct {
	key   *ecdsa.PrivateKey
	hash  crypto.Hash
	algID []byte
}

// AlgorithmIdentifiers (no parameters) of ecdsa-with-SHA256 and -SHA384.
var (
	algECDSAWithSHA256 = []byte{0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02}
	algECDSAWithSHA384 = []byte{0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03}
)

// directKeyOf returns the direct signer of signer, or false when signer
// must go through x509.CreateCertificate: anything but an in-process
// ECDSA P-256 or P-384 key (RSA keys and any other crypto.Signer, which
// might be an HSM or a remote service that returns a faulty signature).
// The signature algorithm is the one x509.CreateCertificate picks for the
// curve.
func directKeyOf(signer crypto.Signer) (directKey, bool) {
	k, ok := signer.(*ecdsa.PrivateKey)
	if !ok {
		return directKey{}, false
	}
	switch k.Curve {
	case elliptic.P256():
		return directKey{key: k, hash: crypto.SHA256, algID: algECDSAWithSHA256}, true
	case elliptic.P384():
		return directKey{key: k, hash: crypto.SHA384, algID: algECDSAWithSHA384}, true
	}
	return directKey{}, false
}

// sign writes the certificate of t issued by issuerSubject (the issuer's
// raw Subject) with authority key ID aki, and signs it once.
// x509.CreateCertificate would also verify the signature it just made, a
// guard against a faulty crypto.Signer that costs one ECDSA verification
// per SVID; the key here is a plain in-process key.
func (d *directKey) sign(t *svidTemplate, issuerSubject, aki []byte) ([]byte, error) {
	var b derBuilder
	uri := t.id.String()
	b.buf = make([]byte, 0, 512+len(uri)+len(issuerSubject)+len(t.spki)+16*len(t.dnsNames))
	cert := b.open(tagSequence)
	tbsStart := len(b.buf)
	if err := appendTBS(&b, t, uri, d.algID, issuerSubject, aki); err != nil {
		return nil, err
	}
	var sig []byte
	var err error
	switch d.hash {
	case crypto.SHA256:
		h := sha256.Sum256(b.buf[tbsStart:])
		sig, err = ecdsa.SignASN1(rand.Reader, d.key, h[:])
	case crypto.SHA384:
		h := sha512.Sum384(b.buf[tbsStart:])
		sig, err = ecdsa.SignASN1(rand.Reader, d.key, h[:])
	default:
		return nil, errors.New("unsupported hash")
	}
	if err != nil {
		return nil, err
	}
	b.buf = append(b.buf, d.algID...)
	bits := b.open(tagBitString)
	b.buf = append(b.buf, 0) // no unused bits
	b.buf = append(b.buf, sig...)
	b.close(bits)
	b.close(cert)
	return b.buf, nil
}

// DER tags used by appendTBS.
const (
	tagBoolean         = 0x01
	tagInteger         = 0x02
	tagBitString       = 0x03
	tagOctetString     = 0x04
	tagOID             = 0x06
	tagUTF8String      = 0x0c
	tagPrintableString = 0x13
	tagUTCTime         = 0x17
	tagGeneralizedTime = 0x18
	tagSequence        = 0x30
	tagSet             = 0x31
	tagVersion         = 0xa0 // [0] EXPLICIT, constructed
	tagExtensions      = 0xa3 // [3] EXPLICIT, constructed
	tagKeyID           = 0x80 // [0] IMPLICIT OCTET STRING in AuthorityKeyIdentifier
	tagSANDNS          = 0x82 // [2] IMPLICIT IA5String
	tagSANURI          = 0x86 // [6] IMPLICIT IA5String
)

// Fixed DER pieces of the SVID TBSCertificate.
var (
	derVersion3      = []byte{tagVersion, 0x03, tagInteger, 0x01, 0x02}
	oidOrganization  = []byte{tagOID, 0x03, 0x55, 0x04, 0x0a}
	oidCommonName    = []byte{tagOID, 0x03, 0x55, 0x04, 0x03}
	oidKeyUsage      = []byte{tagOID, 0x03, 0x55, 0x1d, 0x0f}
	oidExtKeyUsage   = []byte{tagOID, 0x03, 0x55, 0x1d, 0x25}
	oidBasicConstr   = []byte{tagOID, 0x03, 0x55, 0x1d, 0x13}
	oidAuthorityKey  = []byte{tagOID, 0x03, 0x55, 0x1d, 0x23}
	oidSubjectAltNam = []byte{tagOID, 0x03, 0x55, 0x1d, 0x11}
	derCritical      = []byte{tagBoolean, 0x01, 0xff}
	// SEQUENCE { id-kp-serverAuth, id-kp-clientAuth }
	derServerClientAuth = []byte{
		tagSequence, 0x14,
		tagOID, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01,
		tagOID, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02,
	}
	// BasicConstraints of a leaf: cA FALSE (the DEFAULT, omitted), no
	// pathLenConstraint.
	derNotCA = []byte{tagSequence, 0x00}
)

// appendTBS writes the TBSCertificate of t in the order and encoding of
// x509.CreateCertificate for t.x509Template(parent) (Go 1.26): version 3,
// serial, signature algorithm, issuer, validity (UTCTime for the years
// 1950–2049, GeneralizedTime otherwise), subject (O, then CN), the subject
// key, then the extensions key usage (critical), extended key usage, basic
// constraints (critical), authority key ID (when the issuer has a subject
// key ID) and subject alternative names (DNS names, then the URI). It
// refuses what CreateCertificate refuses among t's fields (a negative
// serial, a year outside 0–9999, a non-ASCII SAN or non-UTF-8 CN).
func appendTBS(b *derBuilder, t *svidTemplate, uri string, algID, issuerSubject, aki []byte) error {
	if t.serial == nil || t.serial.Sign() < 0 {
		return errors.New("serial number must be positive")
	}
	tbs := b.open(tagSequence)
	b.buf = append(b.buf, derVersion3...)
	b.appendInteger(t.serial)
	b.buf = append(b.buf, algID...)
	b.buf = append(b.buf, issuerSubject...)

	validity := b.open(tagSequence)
	if err := b.appendTime(t.notBefore); err != nil {
		return err
	}
	if err := b.appendTime(t.notAfter); err != nil {
		return err
	}
	b.close(validity)

	subject := b.open(tagSequence)
	b.appendAttribute(oidOrganization, tagPrintableString, Organization)
	if t.commonName != "" {
		tag, err := directoryStringTag(t.commonName)
		if err != nil {
			return err
		}
		b.appendAttribute(oidCommonName, tag, t.commonName)
	}
	b.close(subject)

	b.buf = append(b.buf, t.spki...)

	exts := b.open(tagExtensions)
	list := b.open(tagSequence)
	ku := keyUsageBits(t.keyUsage)
	if len(ku) > 0 {
		e := b.openExtension(oidKeyUsage, true)
		bits := b.open(tagBitString)
		b.buf = append(b.buf, ku...)
		b.close(bits)
		b.closeExtension(e)
	}
	e := b.openExtension(oidExtKeyUsage, false)
	b.buf = append(b.buf, derServerClientAuth...)
	b.closeExtension(e)
	e = b.openExtension(oidBasicConstr, true)
	b.buf = append(b.buf, derNotCA...)
	b.closeExtension(e)
	if len(aki) > 0 {
		e = b.openExtension(oidAuthorityKey, false)
		seq := b.open(tagSequence)
		id := b.open(tagKeyID)
		b.buf = append(b.buf, aki...)
		b.close(id)
		b.close(seq)
		b.closeExtension(e)
	}
	// The Subject is never empty (O=Hallmark), so the SAN is not critical.
	e = b.openExtension(oidSubjectAltNam, false)
	names := b.open(tagSequence)
	for _, d := range t.dnsNames {
		if !isIA5(d) {
			return fmt.Errorf("DNS name %q is not an IA5String", d)
		}
		n := b.open(tagSANDNS)
		b.buf = append(b.buf, d...)
		b.close(n)
	}
	if !isIA5(uri) {
		return fmt.Errorf("URI %q is not an IA5String", uri)
	}
	n := b.open(tagSANURI)
	b.buf = append(b.buf, uri...)
	b.close(n)
	b.close(names)
	b.closeExtension(e)
	b.close(list)
	b.close(exts)
	b.close(tbs)
	return nil
}

// derBuilder appends DER to buf. open writes a tag and a one-byte length
// placeholder and returns where the contents start; close fills in the
// length, moving the contents when it needs the long form.
type derBuilder struct {
	buf []byte
}

func (b *derBuilder) open(tag byte) int {
	b.buf = append(b.buf, tag, 0)
	return len(b.buf)
}

func (b *derBuilder) close(start int) {
	n := len(b.buf) - start
	if n < 0x80 {
		b.buf[start-1] = byte(n)
		return
	}
	k := 0
	for m := n; m > 0; m >>= 8 {
		k++
	}
	b.buf = append(b.buf, make([]byte, k)...)
	copy(b.buf[start+k:], b.buf[start:start+n])
	b.buf[start-1] = 0x80 | byte(k)
	for i := k - 1; i >= 0; i-- {
		b.buf[start+i] = byte(n)
		n >>= 8
	}
}

// appendInteger writes a non-negative INTEGER as encoding/asn1 does.
func (b *derBuilder) appendInteger(n *big.Int) {
	start := b.open(tagInteger)
	bs := n.Bytes()
	if len(bs) == 0 || bs[0]&0x80 != 0 {
		b.buf = append(b.buf, 0)
	}
	b.buf = append(b.buf, bs...)
	b.close(start)
}

// appendTime writes t in UTC as encoding/asn1 writes a time.Time field:
// UTCTime (YYMMDDHHMMSSZ) for the years 1950–2049, GeneralizedTime
// (YYYYMMDDHHMMSSZ) otherwise, seconds truncated.
func (b *derBuilder) appendTime(t time.Time) error {
	t = t.UTC()
	year := t.Year()
	if year < 0 || year > 9999 {
		return fmt.Errorf("year %d cannot be represented", year)
	}
	var start int
	if year >= 1950 && year < 2050 {
		start = b.open(tagUTCTime)
		b.appendDigits(year%100, 2)
	} else {
		start = b.open(tagGeneralizedTime)
		b.appendDigits(year, 4)
	}
	_, month, day := t.Date()
	hour, minute, sec := t.Clock()
	b.appendDigits(int(month), 2)
	b.appendDigits(day, 2)
	b.appendDigits(hour, 2)
	b.appendDigits(minute, 2)
	b.appendDigits(sec, 2)
	b.buf = append(b.buf, 'Z')
	b.close(start)
	return nil
}

func (b *derBuilder) appendDigits(v, n int) {
	var d [4]byte
	for i := n - 1; i >= 0; i-- {
		d[i] = byte('0' + v%10)
		v /= 10
	}
	b.buf = append(b.buf, d[:n]...)
}

// appendAttribute writes an RDN of one attribute: SET { SEQUENCE { oid, value } }.
func (b *derBuilder) appendAttribute(oid []byte, tag byte, value string) {
	set := b.open(tagSet)
	seq := b.open(tagSequence)
	b.buf = append(b.buf, oid...)
	v := b.open(tag)
	b.buf = append(b.buf, value...)
	b.close(v)
	b.close(seq)
	b.close(set)
}

// openExtension starts an Extension and its extnValue OCTET STRING.
func (b *derBuilder) openExtension(oid []byte, critical bool) [2]int {
	seq := b.open(tagSequence)
	b.buf = append(b.buf, oid...)
	if critical {
		b.buf = append(b.buf, derCritical...)
	}
	return [2]int{seq, b.open(tagOctetString)}
}

func (b *derBuilder) closeExtension(e [2]int) {
	b.close(e[1])
	b.close(e[0])
}

// keyUsageBits returns the contents of the KeyUsage BIT STRING (the
// unused-bits count, then the bytes) as x509.CreateCertificate writes it,
// or nil for no key usage.
func keyUsageBits(ku x509.KeyUsage) []byte {
	if ku == 0 {
		return nil
	}
	a := [2]byte{reverseBits(byte(ku)), reverseBits(byte(ku >> 8))}
	n := 1
	if a[1] != 0 {
		n = 2
	}
	// Bit length: up to and including the last set bit (asn1BitLength).
	last := a[n-1]
	unused := 0
	for last != 0 && last&1 == 0 {
		last >>= 1
		unused++
	}
	return append([]byte{byte(unused)}, a[:n]...)
}

func reverseBits(v byte) byte {
	var r byte
	for range 8 {
		r = r<<1 | v&1
		v >>= 1
	}
	return r
}

// directoryStringTag is the string type encoding/asn1 gives a Subject
// attribute value: PrintableString when every character allows it,
// UTF8String otherwise (an error for invalid UTF-8).
func directoryStringTag(s string) (byte, error) {
	for i := 0; i < len(s); i++ {
		if !isPrintable(s[i]) {
			if !utf8.ValidString(s) {
				return 0, errors.New("string not valid UTF-8")
			}
			return tagUTF8String, nil
		}
	}
	return tagPrintableString, nil
}

// isPrintable reports whether c is in the PrintableString set (no '*' or
// '&', which encoding/asn1 rejects when marshalling).
func isPrintable(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		'\'' <= c && c <= ')' || '+' <= c && c <= '/' || c == ' ' || c == ':' || c == '=' || c == '?'
}

// isIA5 reports whether s is ASCII, as x509.CreateCertificate requires of
// SANs.
func isIA5(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
