package jwtsigner_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"

	"github.com/hallmarkid/hallmark/server/jwtsigner"
)

func BenchmarkSignJWTSVID(b *testing.B) {
	for _, alg := range []string{jwtsigner.ES256, jwtsigner.ES384, jwtsigner.RS256} {
		b.Run(alg, func(b *testing.B) {
			s, err := jwtsigner.New(jwtsigner.Config{TrustDomain: td, Dir: filepath.Join(b.TempDir(), "jwt"), Algorithm: alg})
			if err != nil {
				b.Fatal(err)
			}
			p := jwtsigner.JWTSVIDParams{ID: spiffeid.RequireFromString("spiffe://example.org/w"), Audience: []string{"svc"}}
			ctx := context.Background()
			for b.Loop() {
				if _, err := s.SignJWTSVID(ctx, p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkValidateES256 is go-spiffe's verification of our token, the
// work ValidateJWTSVID does per call.
func BenchmarkValidateES256(b *testing.B) {
	s, err := jwtsigner.New(jwtsigner.Config{TrustDomain: td, Dir: filepath.Join(b.TempDir(), "jwt")})
	if err != nil {
		b.Fatal(err)
	}
	tok, err := s.SignJWTSVID(context.Background(), jwtsigner.JWTSVIDParams{ID: spiffeid.RequireFromString("spiffe://example.org/w"), Audience: []string{"svc"}})
	if err != nil {
		b.Fatal(err)
	}
	bundle := bundleOf(s)
	for b.Loop() {
		if _, err := jwtsvid.ParseAndValidate(tok.Token, bundle, []string{"svc"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSharedPoll is one Rotate with nothing due on a shared store:
// what each HA server does every poll interval (read and decode the shared
// state, find it unchanged).
func BenchmarkSharedPoll(b *testing.B) {
	clk := newClock()
	kv := newMemKV()
	s, err := jwtsigner.New(jwtsigner.Config{TrustDomain: td, Dir: filepath.Join(b.TempDir(), "jwt"), KeyTTL: time.Hour, Clock: clk.Now,
		Shared: kv, SharedNotFound: errKVNotFound})
	if err != nil {
		b.Fatal(err)
	}
	clk.Add(30 * time.Minute) // active and next keys: a typical document
	ctx := context.Background()
	if err := s.Rotate(ctx); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := s.Rotate(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
