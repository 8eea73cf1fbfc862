package sds_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/sds"
)

// seedPair is a self-signed CA certificate and its key, as PEM.
func seedPair(f *testing.F) (cert, key []byte) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "seed"}, NotBefore: time.Unix(0, 0),
		NotAfter: time.Unix(1<<32, 0), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		f.Fatal(err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		f.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})
}

func FuzzParseRootPEM(f *testing.F) {
	cert, key := seedPair(f)
	f.Add(cert)
	f.Add(append(append([]byte{}, cert...), cert...))
	f.Add(key)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := sds.ParseRootPEM(b)
		if err != nil {
			return
		}
		// What is sent is PEM certificates and nothing else, and parses again.
		if _, err := sds.ParseRootPEM(out); err != nil {
			t.Fatalf("re-encoded roots do not parse: %v", err)
		}
	})
}

func FuzzParseKeyPairPEM(f *testing.F) {
	cert, key := seedPair(f)
	f.Add(cert, key)
	f.Add(cert, cert)
	f.Add(key, cert)
	f.Add(cert, append(append([]byte{}, key...), key...))
	f.Add([]byte("x"), []byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, c, k []byte) {
		chain, pk, err := sds.ParseKeyPairPEM(c, k)
		if err != nil {
			return
		}
		if _, _, err := sds.ParseKeyPairPEM(chain, pk); err != nil {
			t.Fatalf("re-encoded pair does not parse: %v", err)
		}
	})
}
