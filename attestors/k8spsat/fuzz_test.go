package k8spsat_test

import (
	"context"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/hallmarkid/hallmark/attestors"
)

// FuzzVerifyPayload feeds arbitrary payloads (and so tokens) to the offline
// verifier: no panic, and nothing unsigned is ever accepted.
func FuzzVerifyPayload(f *testing.F) {
	testKeys(f)
	good := mint(f, ecKey, jose.ES256, "ec1", claims())
	f.Add(payload(f, "prod-eu", good))
	f.Add(payload(f, "prod-eu", unsigned(claims())))
	f.Add(payload(f, "prod-eu", mint(f, attackerKey, jose.ES256, "ec1", claims())))
	f.Add(payload(f, "prod-eu", strings.Replace(good, ".", "..", 1)))
	f.Add(payload(f, "other", good))
	f.Add([]byte(`{"cluster":"prod-eu","token":"a.b.c"}`))
	f.Add([]byte(`{"cluster":"prod-eu","token":"eyJhbGciOiJFUzI1NiJ9.e30.AAAA"}`))
	f.Add([]byte(`null`))
	v := offlineVerifier(f, func() time.Time { return t0 })
	f.Fuzz(func(t *testing.T, p []byte) {
		res, err := v.Verify(context.Background(), attestors.VerifyRequest{Payload: p, TrustDomain: td})
		if err != nil {
			return
		}
		// Only tokens signed with the test issuer's key get through, and
		// they carry its claims.
		if !strings.HasPrefix(res.AgentID.String(), "spiffe://example.org/agent/k8s_psat/prod-eu/") {
			t.Fatalf("accepted %s", res.AgentID)
		}
	})
}
