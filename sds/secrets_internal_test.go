package sds

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"
)

func TestDERChainPEM(t *testing.T) {
	cert := func(cn string) []byte {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	a, b := cert("a"), cert("b")
	tests := []struct {
		name    string
		der     []byte
		want    [][]byte
		wantErr string
	}{
		{name: "one", der: a, want: [][]byte{a}},
		{name: "two", der: append(append([]byte{}, a...), b...), want: [][]byte{a, b}},
		{name: "empty", der: nil},
		{name: "truncated", der: a[:len(a)-3], wantErr: "certificate chain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := derChainPEM(tt.der)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var blocks [][]byte
			for rest := got; ; {
				var blk *pem.Block
				blk, rest = pem.Decode(rest)
				if blk == nil {
					break
				}
				if blk.Type != "CERTIFICATE" {
					t.Fatalf("block type %q", blk.Type)
				}
				blocks = append(blocks, blk.Bytes)
			}
			if len(blocks) != len(tt.want) {
				t.Fatalf("%d blocks, want %d", len(blocks), len(tt.want))
			}
			for i := range blocks {
				if !bytes.Equal(blocks[i], tt.want[i]) {
					t.Errorf("block %d differs", i)
				}
			}
		})
	}
}
