package tpm_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/attestors"
	tpmatt "github.com/hallmarkid/hallmark/attestors/tpm"
)

// A failed verification says whether the evidence was received and proved
// false (a re-attestation then evicts) or never arrived (it does not):
// each failure keeps its message either way.
func TestVerifyErrorClassification(t *testing.T) {
	n := newNode(t, nodeOpts{})
	v := newVerifier(t, tpmatt.ServerConfig{EKCADir: caDir(t, "a"), QuoteTimeout: "300ms"})
	for _, tc := range []struct {
		name        string
		r           round
		wantErr     string
		provedFalse bool
	}{
		{name: "wrong activation secret", provedFalse: true, wantErr: "credential activation failed",
			r: round{answer: func(_ testing.TB, _ *tpmatt.Challenge, a *tpmatt.Answer) { a.Secret[0] ^= 1 }}},
		{name: "quote signature", provedFalse: true, wantErr: "signature",
			r: round{answer: func(_ testing.TB, _ *tpmatt.Challenge, a *tpmatt.Answer) { a.Signature[len(a.Signature)-1] ^= 1 }}},
		{name: "malformed payload", provedFalse: true, wantErr: "tpm:",
			r: round{payload: func(p *tpmatt.Payload) { p.AKPublic = []byte{1, 2} }}},
		{name: "connection dropped", wantErr: "connection reset",
			r: round{challenge: func(context.Context, []byte) ([]byte, error) {
				return nil, attestors.NoEvidence(errors.New("receive challenge response: connection reset"))
			}}},
		{name: "context canceled", wantErr: "canceled",
			r: round{challenge: func(context.Context, []byte) ([]byte, error) { return nil, context.Canceled }}},
		{name: "answer after the deadline", wantErr: "deadline",
			r: round{challenge: func(ctx context.Context, c []byte) ([]byte, error) {
				ans, err := n.col.Answer(ctx, c)
				time.Sleep(400 * time.Millisecond)
				return ans, err
			}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := attest(t, v, n, tc.r)
			checkErr(t, err, tc.wantErr)
			if got := attestors.ProvedFalse(err); got != tc.provedFalse {
				t.Fatalf("ProvedFalse(%v) = %v, want %v", err, got, tc.provedFalse)
			}
		})
	}
}
