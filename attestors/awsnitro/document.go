package awsnitro

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Limits on an attestation document. Real documents are ~5 KiB with a
// 4-certificate bundle; public_key, user_data and nonce may be up to 1 KiB.
const (
	MaxDocumentSize   = 32 << 10
	MaxFieldSize      = 1024
	MaxCertSize       = 4096
	MaxCABundle       = 8
	MaxModuleIDLen    = 128
	maxPCRIndex       = 31
	maxCBORNesting    = 6
	maxCBORArrayElems = 64
	maxCBORMapPairs   = 64
)

// cborTagSign1 is the optional COSE_Sign1 tag.
const cborTagSign1 = 18

// algES384 is the COSE algorithm identifier for ECDSA w/ SHA-384.
const algES384 = -35

// Document is a decoded, not yet verified, attestation document payload.
type Document struct {
	ModuleID    string
	Timestamp   uint64 // milliseconds since the Unix epoch
	Digest      string
	PCRs        map[uint]([]byte)
	Certificate []byte
	CABundle    [][]byte
	PublicKey   []byte
	UserData    []byte
	Nonce       []byte

	// The COSE_Sign1 parts, kept for signature verification.
	protected []byte
	payload   []byte
	signature []byte
}

// coseSign1 is the untagged COSE_Sign1 array.
type coseSign1 struct {
	_           struct{} `cbor:",toarray"`
	Protected   []byte
	Unprotected map[int64]cbor.RawMessage
	Payload     []byte
	Signature   []byte
}

// payload is the attestation document map. Unknown keys are rejected.
type payload struct {
	ModuleID     *string         `cbor:"module_id"`
	Timestamp    *uint64         `cbor:"timestamp"`
	Digest       *string         `cbor:"digest"`
	PCRs         map[uint][]byte `cbor:"pcrs"`
	NitroTPMPCRs map[uint][]byte `cbor:"nitrotpm_pcrs"`
	Certificate  []byte          `cbor:"certificate"`
	CABundle     [][]byte        `cbor:"cabundle"`
	PublicKey    cbor.RawMessage `cbor:"public_key"`
	UserData     cbor.RawMessage `cbor:"user_data"`
	Nonce        cbor.RawMessage `cbor:"nonce"`
}

var decMode = func() cbor.DecMode {
	dm, err := cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		MaxNestedLevels:   maxCBORNesting,
		MaxArrayElements:  maxCBORArrayElems,
		MaxMapPairs:       maxCBORMapPairs,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		UTF8:              cbor.UTF8RejectInvalid,
		FieldNameMatching: cbor.FieldNameMatchingCaseSensitive,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return dm
}()

// ParseDocument decodes a COSE_Sign1 attestation document strictly and
// within bounds: indefinite lengths, duplicate map keys, unknown payload
// keys, tags other than a leading COSE_Sign1 tag, trailing bytes and
// oversized fields are errors. It does not verify anything.
func ParseDocument(b []byte) (*Document, error) {
	if len(b) == 0 {
		return nil, errors.New("awsnitro: document is empty")
	}
	if len(b) > MaxDocumentSize {
		return nil, fmt.Errorf("awsnitro: document is %d bytes, more than %d", len(b), MaxDocumentSize)
	}
	// An optional tag 18 (0xd2) may precede the array.
	if b[0] == 0xc0|cborTagSign1 {
		b = b[1:]
	}
	var msg coseSign1
	rest, err := decMode.UnmarshalFirst(b, &msg)
	if err != nil {
		return nil, fmt.Errorf("awsnitro: decode COSE_Sign1: %w", err)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("awsnitro: decode COSE_Sign1: %d trailing bytes", len(rest))
	}
	if err := checkProtected(msg.Protected); err != nil {
		return nil, err
	}
	if len(msg.Unprotected) != 0 {
		return nil, errors.New("awsnitro: unprotected header is not empty")
	}
	if len(msg.Signature) != 96 {
		return nil, fmt.Errorf("awsnitro: signature is %d bytes, want 96 (raw r||s for ES384)", len(msg.Signature))
	}
	if len(msg.Payload) == 0 {
		return nil, errors.New("awsnitro: payload is empty")
	}

	var p payload
	rest, err = decMode.UnmarshalFirst(msg.Payload, &p)
	if err != nil {
		return nil, fmt.Errorf("awsnitro: decode payload: %w", err)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("awsnitro: decode payload: %d trailing bytes", len(rest))
	}
	doc := &Document{protected: msg.Protected, payload: msg.Payload, signature: msg.Signature}
	if err := p.fill(doc); err != nil {
		return nil, err
	}
	return doc, nil
}

// checkProtected requires the protected header to be exactly {1: -35}.
func checkProtected(b []byte) error {
	if len(b) == 0 {
		return errors.New("awsnitro: protected header is empty")
	}
	var h map[int64]int64
	rest, err := decMode.UnmarshalFirst(b, &h)
	if err != nil {
		return fmt.Errorf("awsnitro: decode protected header: %w", err)
	}
	if len(rest) != 0 {
		return errors.New("awsnitro: protected header has trailing bytes")
	}
	alg, ok := h[1]
	if !ok {
		return errors.New("awsnitro: protected header has no algorithm")
	}
	if alg != algES384 {
		return fmt.Errorf("awsnitro: COSE algorithm %d, want ES384 (-35)", alg)
	}
	if len(h) != 1 {
		return errors.New("awsnitro: protected header has parameters other than the algorithm")
	}
	return nil
}

func (p *payload) fill(d *Document) error {
	switch {
	case p.ModuleID == nil:
		return errors.New("awsnitro: payload: module_id is missing")
	case p.Timestamp == nil:
		return errors.New("awsnitro: payload: timestamp is missing")
	case p.Digest == nil:
		return errors.New("awsnitro: payload: digest is missing")
	case p.NitroTPMPCRs != nil:
		return errors.New("awsnitro: payload: NitroTPM documents (nitrotpm_pcrs) are not enclave documents")
	case p.PCRs == nil:
		return errors.New("awsnitro: payload: pcrs is missing")
	case len(p.Certificate) == 0:
		return errors.New("awsnitro: payload: certificate is missing")
	case len(p.CABundle) == 0:
		return errors.New("awsnitro: payload: cabundle is missing")
	}
	if *p.ModuleID == "" || len(*p.ModuleID) > MaxModuleIDLen {
		return fmt.Errorf("awsnitro: payload: module_id length %d out of range", len(*p.ModuleID))
	}
	if *p.Timestamp == 0 {
		return errors.New("awsnitro: payload: timestamp is zero")
	}
	if *p.Digest != "SHA384" {
		return fmt.Errorf("awsnitro: payload: digest %q, want SHA384", *p.Digest)
	}
	if len(p.PCRs) == 0 {
		return errors.New("awsnitro: payload: pcrs is empty")
	}
	for i, v := range p.PCRs {
		if i > maxPCRIndex {
			return fmt.Errorf("awsnitro: payload: PCR index %d out of range", i)
		}
		if len(v) != 48 {
			return fmt.Errorf("awsnitro: payload: PCR%d is %d bytes, want 48 for SHA384", i, len(v))
		}
	}
	if len(p.Certificate) > MaxCertSize {
		return fmt.Errorf("awsnitro: payload: certificate is %d bytes, more than %d", len(p.Certificate), MaxCertSize)
	}
	if len(p.CABundle) > MaxCABundle {
		return fmt.Errorf("awsnitro: payload: cabundle has %d certificates, more than %d", len(p.CABundle), MaxCABundle)
	}
	for i, c := range p.CABundle {
		if len(c) == 0 || len(c) > MaxCertSize {
			return fmt.Errorf("awsnitro: payload: cabundle[%d] is %d bytes, out of range", i, len(c))
		}
	}
	var err error
	if d.PublicKey, err = optionalBytes("public_key", p.PublicKey); err != nil {
		return err
	}
	if d.UserData, err = optionalBytes("user_data", p.UserData); err != nil {
		return err
	}
	if d.Nonce, err = optionalBytes("nonce", p.Nonce); err != nil {
		return err
	}
	d.ModuleID = *p.ModuleID
	d.Timestamp = *p.Timestamp
	d.Digest = *p.Digest
	d.PCRs = p.PCRs
	d.Certificate = p.Certificate
	d.CABundle = p.CABundle
	return nil
}

// optionalBytes decodes a "bstr / nil" field of at most MaxFieldSize bytes.
func optionalBytes(name string, raw cbor.RawMessage) ([]byte, error) {
	if len(raw) == 0 || bytes.Equal(raw, []byte{0xf6}) { // absent or null
		return nil, nil
	}
	var b []byte
	if err := decMode.Unmarshal(raw, &b); err != nil {
		return nil, fmt.Errorf("awsnitro: payload: %s: %w", name, err)
	}
	if len(b) > MaxFieldSize {
		return nil, fmt.Errorf("awsnitro: payload: %s is %d bytes, more than %d", name, len(b), MaxFieldSize)
	}
	return b, nil
}
