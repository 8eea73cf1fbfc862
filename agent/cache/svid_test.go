package cache_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/agent/cache"
)

func selfSigned(t *testing.T, cn string) []byte {
	t.Helper()
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

func TestSVIDChain(t *testing.T) {
	leaf, inter := selfSigned(t, "leaf"), selfSigned(t, "intermediate")
	tests := []struct {
		name    string
		der     []byte
		want    []string
		wantErr string
	}{
		{name: "leaf only", der: leaf, want: []string{"leaf"}},
		{name: "leaf and intermediate", der: append(append([]byte{}, leaf...), inter...), want: []string{"leaf", "intermediate"}},
		{name: "empty", der: nil, wantErr: "empty chain"},
		{name: "truncated", der: leaf[:len(leaf)-1], wantErr: "cache: SVID"},
		{name: "trailing garbage", der: append(append([]byte{}, leaf...), 0x30, 0x01), wantErr: "cache: SVID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &cache.SVID{CertsDER: tt.der}
			got, err := s.Chain()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("%d certificates, want %d", len(got), len(tt.want))
			}
			for i, c := range got {
				if c.Subject.CommonName != tt.want[i] {
					t.Errorf("certificate %d is %q, want %q", i, c.Subject.CommonName, tt.want[i])
				}
			}
		})
	}
}
