package awsnitro_test

import (
	"bytes"
	"crypto/elliptic"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/hallmarkid/hallmark/attestors/awsnitro"
)

// malleate returns the document with its ES384 signature (r, s) replaced by
// (r, n-s): a second signature over the same bytes that verifies with the
// same key. The signature is the last element of the COSE_Sign1 array, so
// the rest of the encoding is kept byte for byte.
func malleate(t *testing.T, doc []byte) []byte {
	t.Helper()
	body := doc
	if len(body) > 0 && body[0] == 0xd2 {
		body = body[1:]
	}
	var msg []cbor.RawMessage
	if err := cbor.Unmarshal(body, &msg); err != nil || len(msg) != 4 {
		t.Fatalf("not a COSE_Sign1 array: %v", err)
	}
	var sig []byte
	if err := cbor.Unmarshal(msg[3], &sig); err != nil || len(sig) != 96 {
		t.Fatalf("signature: %v (%d bytes)", err, len(sig))
	}
	if !bytes.HasSuffix(doc, sig) {
		t.Fatal("the signature is not the document's last bytes")
	}
	n := elliptic.P384().Params().N
	s := new(big.Int).SetBytes(sig[48:])
	s.Sub(n, s)
	twin := bytes.Clone(doc)
	s.FillBytes(twin[len(twin)-48:])
	if bytes.Equal(twin, doc) {
		t.Fatal("twin equals the original")
	}
	return twin
}

// nullUnprotected re-encodes the document's empty unprotected header {} as
// null, which the parser also accepts: a second encoding of the same signed
// document with the same signature.
func nullUnprotected(t *testing.T, doc []byte) []byte {
	t.Helper()
	prefix := []byte{0x84, 0x44, 0xa1, 0x01, 0x38, 0x22, 0xa0}
	if !bytes.HasPrefix(doc, prefix) {
		t.Fatalf("unexpected document start % x", doc[:len(prefix)])
	}
	out := bytes.Clone(doc)
	out[len(prefix)-1] = 0xf6
	if _, err := awsnitro.ParseDocument(out); err != nil {
		t.Fatalf("null unprotected header: %v", err)
	}
	return out
}

// TestReplayMalleatedSignature replays a real AWS document with its
// signature malleated to (r, n-s). The twin is a valid document on its own;
// after the original was accepted it must be refused as a replay, as must the
// original after the twin, and the tagged encoding of either.
func TestReplayMalleatedSignature(t *testing.T) {
	real := readB64(t, "nitro-attestation-real.b64")
	twin := malleate(t, real)
	now := realTime.Add(time.Second)

	// The twin verifies on its own: the attack is real.
	if _, err := newVerifier(t, awsnitro.ServerConfig{}, nil, now).VerifyDocument(twin, awsnitro.Expect{}); err != nil {
		t.Fatalf("the (r, n-s) twin does not verify on its own: %v", err)
	}

	tests := []struct {
		name         string
		first, again []byte
	}{
		{name: "twin after original", first: real, again: twin},
		{name: "original after twin", first: twin, again: real},
		{name: "tagged twin after original", first: real, again: append([]byte{0xd2}, twin...)},
		{name: "original again", first: real, again: real},
		{name: "null unprotected header after original", first: real, again: nullUnprotected(t, real)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifier(t, awsnitro.ServerConfig{}, nil, now)
			if _, err := v.VerifyDocument(tc.first, awsnitro.Expect{}); err != nil {
				t.Fatal(err)
			}
			_, err := v.VerifyDocument(tc.again, awsnitro.Expect{})
			if err == nil || !strings.Contains(err.Error(), "already used") {
				t.Fatalf("replay: err = %v, want \"already used\"", err)
			}
		})
	}
}
