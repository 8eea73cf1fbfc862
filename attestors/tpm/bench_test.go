package tpm_test

import (
	"testing"

	tpmatt "github.com/hallmarkid/hallmark/attestors/tpm"
)

// BenchmarkAttestSwtpm is a full attestation round trip on swtpm: the
// agent's payload, the server's challenge, credential activation and quote
// on the TPM, and the server's verification. The AK exists already (it is
// created once and persisted, as on an agent's later starts).
func BenchmarkAttestSwtpm(b *testing.B) {
	for _, akType := range []string{"ecc", "rsa"} {
		b.Run("ak="+akType, func(b *testing.B) {
			n := newNode(b, nodeOpts{akType: akType})
			v := newVerifier(b, tpmatt.ServerConfig{EKCADir: caDir(b, "a")})
			key := agentKey(b)
			b.ResetTimer()
			for b.Loop() {
				if _, err := attest(b, v, n, round{key: key}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
