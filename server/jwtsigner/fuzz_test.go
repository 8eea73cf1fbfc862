package jwtsigner_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"testing"

	"github.com/hallmarkid/hallmark/server/jwtsigner"
)

// FuzzParseKeyPEM feeds arbitrary key-file contents to the loader: it must
// return a usable key or an error, never panic.
func FuzzParseKeyPEM(f *testing.F) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	good := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	f.Add(good)
	f.Add(append(append([]byte{}, good...), good...))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: der}))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der[:len(der)/2]}))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		sk, err := jwtsigner.ParseKeyPEM(data)
		if err != nil {
			return
		}
		if _, err := jwtsigner.KeyID(sk.Public()); err != nil {
			t.Fatalf("accepted key has no key ID: %v", err)
		}
	})
}

// FuzzDecodeState feeds arbitrary state documents (the local file or the
// shared KV value, which other servers write) to the decoder.
func FuzzDecodeState(f *testing.F) {
	valid := validState(f)
	f.Add(valid)
	for _, m := range stateMutations {
		f.Add([]byte(m.mutate(string(valid))))
	}
	f.Add([]byte(`{"format":1,"trust_domain":"example.org","keys":[]}`))
	f.Add([]byte(`{"format":1,"trust_domain":"example.org","keys":[{"status":"active","key":"","created_at":"2030-01-01T00:00:00Z","not_after":"2031-01-01T00:00:00Z"}]}`))
	f.Add([]byte("null"))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := jwtsigner.DecodeState(data, td)
		if err == nil && (n < 1 || n > 16) {
			t.Fatalf("accepted a state of %d keys", n)
		}
	})
}
