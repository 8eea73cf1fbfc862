package federation_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"testing"

	"github.com/hallmarkid/hallmark/server/federation"
)

func TestSequencer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := openStore(t)
	a, b := newCA(t, "hub.test"), newCA(t, "hub.test")
	jwtKey := newKey(t).Public()
	s := federation.NewSequencer(store, nil)
	steps := []struct {
		name  string
		certs []*x509.Certificate
		jwt   map[string]crypto.PublicKey
		want  uint64
	}{
		{name: "first bundle", certs: []*x509.Certificate{a.cert}, want: 1},
		{name: "unchanged", certs: []*x509.Certificate{a.cert}, want: 1},
		{name: "next authority published", certs: []*x509.Certificate{a.cert, b.cert}, want: 2},
		{name: "order does not matter", certs: []*x509.Certificate{b.cert, a.cert}, want: 2},
		{name: "JWT key added", certs: []*x509.Certificate{b.cert, a.cert}, jwt: map[string]crypto.PublicKey{"k": jwtKey}, want: 3},
		{name: "JWT key renamed", certs: []*x509.Certificate{b.cert, a.cert}, jwt: map[string]crypto.PublicKey{"k2": jwtKey}, want: 4},
		{name: "old authority pruned", certs: []*x509.Certificate{b.cert}, jwt: map[string]crypto.PublicKey{"k2": jwtKey}, want: 5},
	}
	for _, st := range steps {
		got, err := s.Sequence(ctx, st.certs, st.jwt)
		if err != nil || got != st.want {
			t.Fatalf("%s: sequence %d, %v; want %d", st.name, got, err, st.want)
		}
	}
	// Another server on the same database, or a restart, agrees.
	other := federation.NewSequencer(store, nil)
	src := other.Source(func() []*x509.Certificate { return []*x509.Certificate{b.cert} },
		func() map[string]crypto.PublicKey { return map[string]crypto.PublicKey{"k2": jwtKey} })
	if _, seq := src(); seq != 5 {
		t.Fatalf("after restart: sequence %d, want 5", seq)
	}
	// Going back to an earlier set is a new version, never an old number.
	if seq, _ := other.Sequence(ctx, []*x509.Certificate{a.cert}, nil); seq != 6 {
		t.Fatalf("earlier set again: sequence %d, want 6", seq)
	}
}
