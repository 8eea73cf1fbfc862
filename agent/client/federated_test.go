package client_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"

	"github.com/hallmarkid/hallmark/agent/client"
	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/internal/x509util"
)

var partner = spiffeid.RequireTrustDomainFromString("partner.test")

func caDER(t testing.TB) []byte {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestParseFederatedBundle(t *testing.T) {
	ca, key := caDER(t), pubDER(t)
	tooMany := make([][]byte, x509util.MaxChain+1)
	for i := range tooMany {
		tooMany[i] = ca
	}
	for _, tt := range []struct {
		name              string
		in                *apiv1.FederatedBundle
		wantTD            string // set when the trust domain must be reported, even on error
		wantCerts, wantJW int
		wantEmpty         bool
		wantErr           string
	}{
		{name: "roots and keys", in: &apiv1.FederatedBundle{TrustDomain: "partner.test", X509Authorities: [][]byte{ca},
			JwtKeys: []*apiv1.JWTKey{{KeyId: "k", PublicKey: key}}, SequenceNumber: 3}, wantTD: "partner.test", wantCerts: 1, wantJW: 1},
		{name: "roots only", in: &apiv1.FederatedBundle{TrustDomain: "partner.test", X509Authorities: [][]byte{ca}},
			wantTD: "partner.test", wantCerts: 1},
		{name: "trust domain as an ID", in: &apiv1.FederatedBundle{TrustDomain: "spiffe://partner.test", X509Authorities: [][]byte{ca}},
			wantTD: "partner.test", wantCerts: 1},
		{name: "empty means revoked", in: &apiv1.FederatedBundle{TrustDomain: "partner.test"}, wantTD: "partner.test", wantEmpty: true},
		{name: "no trust domain", in: &apiv1.FederatedBundle{X509Authorities: [][]byte{ca}}, wantErr: "trust domain"},
		{name: "bad trust domain", in: &apiv1.FederatedBundle{TrustDomain: "Partner.Test"}, wantErr: "trust domain"},
		{name: "malformed root", in: &apiv1.FederatedBundle{TrustDomain: "partner.test", X509Authorities: [][]byte{ca[:40]}},
			wantTD: "partner.test", wantErr: "certificate 0"},
		{name: "too many roots", in: &apiv1.FederatedBundle{TrustDomain: "partner.test", X509Authorities: tooMany},
			wantTD: "partner.test", wantErr: "more than"},
		{name: "malformed JWT key", in: &apiv1.FederatedBundle{TrustDomain: "partner.test", X509Authorities: [][]byte{ca},
			JwtKeys: []*apiv1.JWTKey{{KeyId: "k", PublicKey: key[:10]}}}, wantTD: "partner.test", wantErr: "key \"k\""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			td, b, err := client.ParseFederatedBundle(tt.in)
			if tt.wantTD != "" && td.Name() != tt.wantTD {
				t.Errorf("trust domain %q, want %q", td.Name(), tt.wantTD)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(b.X509Authorities()) != tt.wantCerts || len(b.JWTAuthorities()) != tt.wantJW || b.Empty() != tt.wantEmpty {
				t.Fatalf("%d roots, %d keys, empty=%v", len(b.X509Authorities()), len(b.JWTAuthorities()), b.Empty())
			}
			if b.TrustDomain() != partner {
				t.Fatalf("bundle of %s", b.TrustDomain())
			}
		})
	}
}

// FuzzParseFederatedBundle feeds arbitrary wire bytes of a
// FederatedBundle message.
func FuzzParseFederatedBundle(f *testing.F) {
	seed, _ := proto.Marshal(&apiv1.FederatedBundle{TrustDomain: "partner.test", X509Authorities: [][]byte{caDER(f)},
		JwtKeys: []*apiv1.JWTKey{{KeyId: "a", PublicKey: pubDER(f)}}, SequenceNumber: 7})
	f.Add(seed)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x0c, 'p', 'a', 'r', 't', 'n', 'e', 'r', '.', 't', 'e', 's', 't'})
	f.Add([]byte{0x0a, 0x01, 'x', 0x12, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		var p apiv1.FederatedBundle
		if proto.Unmarshal(data, &p) != nil {
			return
		}
		td, b, err := client.ParseFederatedBundle(&p)
		if err != nil {
			if b != nil {
				t.Fatal("bundle returned with an error")
			}
			return
		}
		if td.IsZero() || b.TrustDomain() != td {
			t.Fatalf("bundle of %q for trust domain %q", b.TrustDomain(), td)
		}
		if len(b.X509Authorities()) != len(p.GetX509Authorities()) || len(b.JWTAuthorities()) != len(p.GetJwtKeys()) {
			t.Fatal("authorities lost or invented")
		}
	})
}
