package tpm

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/attestors"
	"github.com/hallmarkid/hallmark/tpm/tpmtest"
)

// BenchmarkVerifyServer measures the server's CPU cost per attestation:
// payload and EK certificate checks, AK checks, MakeCredential, then the
// answer (activation secret, quote signature, nonce, PCR digest, policy).
// The answer is recorded once on swtpm; each iteration makes a fresh
// session and is then handed the recorded secret and nonce.
func BenchmarkVerifyServer(b *testing.B) {
	for _, akType := range []string{"ecc", "rsa"} {
		b.Run("ak="+akType, func(b *testing.B) {
			ca := tpmtest.SharedCA(b, "a")
			inst := tpmtest.Shared(b, "a", ca).Start(b)
			col, err := NewCollector(AgentConfig{Device: inst.Device(), AKType: akType, EventLog: "none"}, b.TempDir(), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer col.Close()
			v, err := NewVerifier(ServerConfig{EKCADir: ca.WriteDir(b)}, nil)
			if err != nil {
				b.Fatal(err)
			}
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			ctx := context.Background()
			payload, err := col.Payload(ctx, attestors.CollectRequest{AgentKey: k.Public()})
			if err != nil {
				b.Fatal(err)
			}
			req := attestors.VerifyRequest{Payload: payload, AgentKey: k.Public(), TrustDomain: spiffeid.RequireTrustDomainFromString("example.org")}
			rec, chal, err := v.begin(req)
			if err != nil {
				b.Fatal(err)
			}
			answer, err := col.Answer(ctx, chal)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := v.finish(rec, answer); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					s, _, err := v.begin(req)
					if err != nil {
						b.Fatal(err)
					}
					s.secret, s.quoteData = rec.secret, rec.quoteData
					if _, err := v.finish(s, answer); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
