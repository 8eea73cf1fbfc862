package agent

import (
	"crypto/x509"
	"testing"
	"time"
)

func TestHalfLife(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	backdated := &x509.Certificate{NotBefore: now.Add(-10 * time.Second), NotAfter: now.Add(4 * time.Second)}
	tests := []struct {
		name     string
		leaf     *x509.Certificate
		received time.Time
		want     time.Time
	}{
		// The server backdates NotBefore by 10 s: a 4 s SVID's half-life
		// counted from NotBefore is already past, which renewed at once,
		// over and over.
		{name: "short-lived, backdated: from receipt", leaf: backdated, received: now, want: now.Add(2 * time.Second)},
		{name: "loaded from disk: from NotBefore", leaf: backdated, want: now.Add(-3 * time.Second)},
		{name: "received after expiry: from NotBefore", leaf: backdated, received: now.Add(time.Minute), want: now.Add(-3 * time.Second)},
		{name: "hour-long", leaf: &x509.Certificate{NotBefore: now.Add(-10 * time.Second), NotAfter: now.Add(time.Hour)}, received: now,
			want: now.Add(30 * time.Minute)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := halfLife(tt.leaf, tt.received); !got.Equal(tt.want) {
				t.Fatalf("halfLife = %s, want %s", got, tt.want)
			}
		})
	}
}
