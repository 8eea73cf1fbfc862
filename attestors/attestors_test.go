package attestors_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/hallmarkid/hallmark/attestors"
)

func TestProvedFalse(t *testing.T) {
	bad := errors.New("tpm: quote: bad signature")
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{name: "nil", err: nil},
		{name: "unclassified", err: bad},
		{name: "rejected", err: attestors.Rejected(bad), want: true},
		{name: "rejected, wrapped", err: fmt.Errorf("attestation failed: %w", attestors.Rejected(bad)), want: true},
		{name: "no evidence", err: attestors.NoEvidence(bad)},
		{name: "rejected around no evidence", err: attestors.Rejected(attestors.NoEvidence(bad))},
		{name: "rejected around a cancellation", err: attestors.Rejected(fmt.Errorf("recv: %w", context.Canceled))},
		{name: "rejected around a deadline", err: attestors.Rejected(fmt.Errorf("recv: %w", context.DeadlineExceeded))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := attestors.ProvedFalse(tc.err); got != tc.want {
				t.Fatalf("ProvedFalse(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
	if attestors.Rejected(nil) != nil || attestors.NoEvidence(nil) != nil {
		t.Fatal("marking nil must give nil")
	}
	if r := attestors.Rejected(bad); r.Error() != bad.Error() || !errors.Is(r, bad) {
		t.Fatalf("Rejected changed the error: %v", r)
	}
}
