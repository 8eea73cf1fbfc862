package awsiam_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/attestors"
	"github.com/hallmarkid/hallmark/attestors/awsiam"
	"github.com/hallmarkid/hallmark/attestors/awsiam/awsfake"
)

// FuzzSignedRequest feeds arbitrary answers to the verifier. A fresh random
// challenge is issued each time, so nothing may ever reach STS.
func FuzzSignedRequest(f *testing.F) {
	sr := signManual(f, agentCreds, map[string]string{
		"Content-Type": "application/x-www-form-urlencoded; charset=utf-8", awsiam.ChallengeHeader: "AAAA",
	}, time.Now())
	b, _ := json.Marshal(sr)
	f.Add(b)
	f.Add([]byte(`{"method":"POST","host":"sts.amazonaws.com","path":"/","headers":[["a","b"]],"body":""}`))
	f.Add([]byte(`{}`))
	sts := awsfake.NewSTS(f, taskRole)
	v, err := awsiam.NewVerifier(awsiam.ServerConfig{AccountIDs: []string{account}, STSURLOverride: sts.URL}, quietLog())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, answer []byte) {
		_, err := v.Verify(context.Background(), attestors.VerifyRequest{
			Payload: []byte(`{"version":1}`), TrustDomain: td,
			Challenge: func(context.Context, []byte) ([]byte, error) { return answer, nil },
		})
		if err == nil {
			t.Fatal("accepted an answer to a challenge it never saw")
		}
		if sts.Conns.Load() != 0 {
			t.Fatal("a request reached STS")
		}
	})
}

// BenchmarkVerify measures one full attestation: challenge, SigV4 signing
// by the collector, checks, and the loopback STS round trip.
func BenchmarkVerify(b *testing.B) {
	sts := awsfake.NewSTS(b, taskRole)
	v, err := awsiam.NewVerifier(awsiam.ServerConfig{AccountIDs: []string{account}, STSURLOverride: sts.URL}, quietLog())
	if err != nil {
		b.Fatal(err)
	}
	c, err := awsiam.NewCollector(awsiam.AgentConfig{TrustDomain: td, Region: "us-east-1"}, quietLog(), awsiam.WithCredentials(staticCreds(agentCreds)))
	if err != nil {
		b.Fatal(err)
	}
	payload, _ := c.Payload(context.Background(), attestors.CollectRequest{})
	for b.Loop() {
		if _, err := v.Verify(context.Background(), attestors.VerifyRequest{Payload: payload, TrustDomain: td, Challenge: c.Answer}); err != nil {
			b.Fatal(err)
		}
	}
}
