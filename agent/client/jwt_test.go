package client_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"

	"github.com/hallmarkid/hallmark/agent/client"
	apiv1 "github.com/hallmarkid/hallmark/api/v1"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

func pubDER(t testing.TB) []byte {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestParseJWTBundle(t *testing.T) {
	a, b := pubDER(t), pubDER(t)
	many := &apiv1.JWTBundle{}
	for range client.MaxJWTKeys + 1 {
		many.Keys = append(many.Keys, &apiv1.JWTKey{KeyId: "k", PublicKey: a})
	}
	for _, tt := range []struct {
		name     string
		in       *apiv1.JWTBundle
		wantKeys int
		wantErr  string
	}{
		{name: "two keys", in: &apiv1.JWTBundle{Keys: []*apiv1.JWTKey{{KeyId: "a", PublicKey: a}, {KeyId: "b", PublicKey: b}}}, wantKeys: 2},
		{name: "empty (no keys)", in: &apiv1.JWTBundle{}, wantKeys: 0},
		{name: "key without ID", in: &apiv1.JWTBundle{Keys: []*apiv1.JWTKey{{PublicKey: a}}}, wantErr: "without an ID"},
		{name: "duplicate ID", in: &apiv1.JWTBundle{Keys: []*apiv1.JWTKey{{KeyId: "a", PublicKey: a}, {KeyId: "a", PublicKey: b}}}, wantErr: "twice"},
		{name: "malformed key", in: &apiv1.JWTBundle{Keys: []*apiv1.JWTKey{{KeyId: "a", PublicKey: a[:20]}}}, wantErr: "key \"a\""},
		{name: "too many keys", in: many, wantErr: "at most"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := client.ParseJWTBundle(td, tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got.JWTAuthorities()) != tt.wantKeys || got.TrustDomain() != td {
				t.Fatalf("%d keys for %s", len(got.JWTAuthorities()), got.TrustDomain())
			}
		})
	}
}

// FuzzParseJWTBundle feeds arbitrary wire bytes of a JWTBundle message.
func FuzzParseJWTBundle(f *testing.F) {
	seed, _ := proto.Marshal(&apiv1.JWTBundle{Keys: []*apiv1.JWTKey{{KeyId: "a", PublicKey: pubDER(f)}}})
	f.Add(seed)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x02, 0x0a, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		var p apiv1.JWTBundle
		if proto.Unmarshal(data, &p) != nil {
			return
		}
		b, err := client.ParseJWTBundle(td, &p)
		if err != nil {
			return
		}
		if len(b.JWTAuthorities()) != len(p.GetKeys()) {
			t.Fatalf("%d keys in, %d out", len(p.GetKeys()), len(b.JWTAuthorities()))
		}
	})
}
