package awsiid

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
)

var (
	oidData          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidSignedData    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidContentType   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	oidMessageDigest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	oidSHA256        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidRSA           = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidSHA256WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
)

type contentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"explicit,tag:0"`
}

type signedData struct {
	Version          int
	DigestAlgorithms asn1.RawValue
	EncapContent     encapContentInfo
	Certificates     asn1.RawValue `asn1:"optional,tag:0"`
	CRLs             asn1.RawValue `asn1:"optional,tag:1"`
	SignerInfos      []signerInfo  `asn1:"set"`
}

type encapContentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     []byte `asn1:"explicit,optional,tag:0"`
}

type signerInfo struct {
	Version            int
	SID                asn1.RawValue
	DigestAlgorithm    pkix.AlgorithmIdentifier
	SignedAttrs        asn1.RawValue `asn1:"optional,tag:0"`
	SignatureAlgorithm pkix.AlgorithmIdentifier
	Signature          []byte
	UnsignedAttrs      asn1.RawValue `asn1:"optional,tag:1"`
}

type attribute struct {
	Type   asn1.ObjectIdentifier
	Values asn1.RawValue `asn1:"set"`
}

// signedMessage is a parsed PKCS#7 SignedData with one signer.
type signedMessage struct {
	content []byte
	signer  signerInfo
}

// parsePKCS7 parses BER or DER PKCS#7 SignedData carrying id-data content
// and exactly one SignerInfo. It does not verify.
func parsePKCS7(ber []byte) (*signedMessage, error) {
	der, err := berToDER(ber)
	if err != nil {
		return nil, err
	}
	var ci contentInfo
	if rest, err := asn1.Unmarshal(der, &ci); err != nil {
		return nil, fmt.Errorf("awsiid: PKCS#7 ContentInfo: %w", err)
	} else if len(rest) != 0 {
		return nil, errors.New("awsiid: PKCS#7 ContentInfo: trailing bytes")
	}
	if !ci.ContentType.Equal(oidSignedData) {
		return nil, fmt.Errorf("awsiid: PKCS#7 content type %v is not SignedData", ci.ContentType)
	}
	var sd signedData
	if rest, err := asn1.Unmarshal(ci.Content.Bytes, &sd); err != nil {
		return nil, fmt.Errorf("awsiid: PKCS#7 SignedData: %w", err)
	} else if len(rest) != 0 {
		return nil, errors.New("awsiid: PKCS#7 SignedData: trailing bytes")
	}
	if !sd.EncapContent.ContentType.Equal(oidData) {
		return nil, fmt.Errorf("awsiid: PKCS#7 encapsulated content type %v is not data", sd.EncapContent.ContentType)
	}
	if len(sd.EncapContent.Content) == 0 {
		return nil, errors.New("awsiid: PKCS#7 has no embedded document")
	}
	if len(sd.SignerInfos) != 1 {
		return nil, fmt.Errorf("awsiid: PKCS#7 has %d signers, want 1", len(sd.SignerInfos))
	}
	return &signedMessage{content: sd.EncapContent.Content, signer: sd.SignerInfos[0]}, nil
}

// verify checks the signature with pub: SHA-256, RSA PKCS#1 v1.5, over the
// signed attributes (whose message digest must match the content) or, when
// there are none, over the content.
func (m *signedMessage) verify(pub *rsa.PublicKey) error {
	si := m.signer
	if !si.DigestAlgorithm.Algorithm.Equal(oidSHA256) {
		return fmt.Errorf("awsiid: PKCS#7 digest algorithm %v is not SHA-256", si.DigestAlgorithm.Algorithm)
	}
	if a := si.SignatureAlgorithm.Algorithm; !a.Equal(oidRSA) && !a.Equal(oidSHA256WithRSA) {
		return fmt.Errorf("awsiid: PKCS#7 signature algorithm %v is not RSA", a)
	}
	contentDigest := sha256.Sum256(m.content)
	signed := m.content
	if len(si.SignedAttrs.FullBytes) > 0 {
		if err := checkSignedAttrs(si.SignedAttrs.Bytes, contentDigest[:]); err != nil {
			return err
		}
		// The signature covers the attributes' DER with the SET tag.
		signed = append([]byte{0x31}, si.SignedAttrs.FullBytes[1:]...)
	}
	d := sha256.Sum256(signed)
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], si.Signature); err != nil {
		return fmt.Errorf("awsiid: PKCS#7 signature does not verify with the region's certificate: %w", err)
	}
	return nil
}

func checkSignedAttrs(b, contentDigest []byte) error {
	var gotDigest, gotType bool
	for len(b) > 0 {
		var a attribute
		var err error
		if b, err = asn1.Unmarshal(b, &a); err != nil {
			return fmt.Errorf("awsiid: PKCS#7 signed attributes: %w", err)
		}
		switch {
		case a.Type.Equal(oidMessageDigest):
			if gotDigest {
				return errors.New("awsiid: PKCS#7 has two message digests")
			}
			gotDigest = true
			var md []byte
			if rest, err := asn1.Unmarshal(a.Values.Bytes, &md); err != nil || len(rest) != 0 {
				return errors.New("awsiid: PKCS#7 message digest is malformed")
			}
			if subtle.ConstantTimeCompare(md, contentDigest) != 1 {
				return errors.New("awsiid: PKCS#7 message digest does not match the document")
			}
		case a.Type.Equal(oidContentType):
			if gotType {
				return errors.New("awsiid: PKCS#7 has two content types")
			}
			gotType = true
			var ct asn1.ObjectIdentifier
			if rest, err := asn1.Unmarshal(a.Values.Bytes, &ct); err != nil || len(rest) != 0 || !ct.Equal(oidData) {
				return errors.New("awsiid: PKCS#7 signed content type is not data")
			}
		}
	}
	if !gotDigest || !gotType {
		return errors.New("awsiid: PKCS#7 signed attributes lack the message digest or content type")
	}
	return nil
}

// verifyRSA1024 checks the /signature endpoint's RSA-SHA256 PKCS#1 v1.5
// signature over the document.
func verifyRSA1024(pub *rsa.PublicKey, doc, sig []byte) error {
	d := sha256.Sum256(doc)
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], sig); err != nil {
		return fmt.Errorf("awsiid: signature does not verify with the region's certificate: %w", err)
	}
	return nil
}
