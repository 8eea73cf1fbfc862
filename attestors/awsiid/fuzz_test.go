package awsiid_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/hallmarkid/hallmark/attestors"
	"github.com/hallmarkid/hallmark/attestors/awsiid"
)

// FuzzVerifyPayload feeds arbitrary payload JSON to the verifier.
func FuzzVerifyPayload(f *testing.F) {
	fx := newFixture(f)
	doc := makeDoc(instanceID, "us-east-1")
	f.Add(fx.payload(f, doc, p7opts{}))
	f.Add(fx.payload(f, doc, p7opts{der: true, noAttrs: true}))
	f.Add([]byte(`{"document":"{}","signature":"AAAA"}`))
	f.Add([]byte(`{}`))
	v, err := awsiid.NewVerifier(awsiid.ServerConfig{AllowRSA1024Signature: true}, quietLog(), awsiid.WithRegionCertificates(fx.rsa2048, fx.rsa1024))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := v.Verify(context.Background(), attestors.VerifyRequest{Payload: b, TrustDomain: td})
		if err == nil && res.AgentID.IsZero() {
			t.Fatal("accepted without an agent ID")
		}
	})
}

// FuzzPKCS7 feeds arbitrary PKCS#7 bytes (BER) with a fixed document.
func FuzzPKCS7(f *testing.F) {
	fx := newFixture(f)
	doc := makeDoc(instanceID, "us-east-1")
	f.Add(signPKCS7(f, []byte(doc), fx.east2048, fx.rsa2048["us-east-1"], p7opts{}))
	f.Add(signPKCS7(f, []byte(doc), fx.east2048, fx.rsa2048["us-east-1"], p7opts{der: true}))
	f.Add([]byte{0x30, 0x80, 0x24, 0x80, 0x04, 0x01, 0x41, 0x00, 0x00, 0x00, 0x00})
	v, err := awsiid.NewVerifier(awsiid.ServerConfig{}, quietLog(), awsiid.WithRegionCertificates(fx.rsa2048, fx.rsa1024))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, p7 []byte) {
		b, _ := json.Marshal(awsiid.Payload{RSA2048: base64.StdEncoding.EncodeToString(p7)})
		if raw, err := v.VerifyPayload(b); err == nil && len(raw) == 0 {
			t.Fatal("verified an empty document")
		}
	})
}

func BenchmarkVerifyRSA2048(b *testing.B) {
	fx := newFixture(b)
	payload := fx.payload(b, makeDoc(instanceID, "us-east-1"), p7opts{})
	v, err := awsiid.NewVerifier(awsiid.ServerConfig{}, quietLog(), awsiid.WithRegionCertificates(fx.rsa2048, fx.rsa1024))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := v.Verify(context.Background(), attestors.VerifyRequest{Payload: payload, TrustDomain: td}); err != nil {
			b.Fatal(err)
		}
	}
}
