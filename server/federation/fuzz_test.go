package federation_test

import (
	"os"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"

	"github.com/hallmarkid/hallmark/server/federation"
)

func bundleSeeds(f *testing.F) [][]byte {
	seeds := [][]byte{
		[]byte(`{"keys":[]}`),
		[]byte(`{"keys":[],"spiffe_sequence":3,"spiffe_refresh_hint":60}`),
		[]byte(`{"keys":[],"spiffe_sequence":18446744073709551615,"spiffe_refresh_hint":-9223372036854775808}`),
		[]byte(`{"keys":null}`),
		[]byte(`{"keys":[{"use":"jwt-svid","kty":"EC","crv":"P-256","kid":"k"}]}`),
		[]byte(`{"keys":[{"use":"x509-svid","x5c":["AAAA"]}]}`),
		[]byte(`[]`),
	}
	for _, name := range []string{"go-spiffe-valid-x509-and-jwt.json", "go-spiffe-two-certs-in-x5c.json", "go-spiffe-jwt-key-without-kid.json"} {
		data, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, data)
	}
	ca := newCA(f, "local")
	data, err := federation.MarshalBundle(ca.spiffeBundle(7))
	if err != nil {
		f.Fatal(err)
	}
	return append(seeds, data)
}

// FuzzParseBundle: any input is parsed or refused without panicking, and
// what parses survives a marshal/parse round trip unchanged.
func FuzzParseBundle(f *testing.F) {
	for _, s := range bundleSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := federation.ParseBundle(td("local"), data)
		if err != nil {
			return
		}
		out, err := federation.MarshalBundle(b)
		if err != nil {
			t.Fatalf("marshal a parsed bundle: %v", err)
		}
		again, err := federation.ParseBundle(td("local"), out)
		if err != nil {
			t.Fatalf("parse our own output: %v\n%s", err, out)
		}
		if !again.Equal(b) {
			t.Fatalf("round trip changed the bundle:\n%s\n%s", data, out)
		}
	})
}

// FuzzBundleUpdate: the update rule never accepts a lower sequence, a
// missing one after one was accepted, or other keys under the same one.
func FuzzBundleUpdate(f *testing.F) {
	seeds := bundleSeeds(f)
	for i := range seeds {
		f.Add(seeds[i], seeds[(i+1)%len(seeds)])
	}
	f.Fuzz(func(t *testing.T, prevData, nextData []byte) {
		prev, err1 := federation.ParseBundle(td("local"), prevData)
		next, err2 := federation.ParseBundle(td("local"), nextData)
		if err1 != nil || err2 != nil {
			return
		}
		if federation.CheckSequence(prev, next) != nil {
			return
		}
		ps, pok := prev.SequenceNumber()
		ns, nok := next.SequenceNumber()
		switch {
		case pok && !nok:
			t.Fatal("accepted a bundle without sequence after one with")
		case pok && ns < ps:
			t.Fatalf("accepted sequence %d after %d", ns, ps)
		case pok && ns == ps && !sameKeys(prev, next):
			t.Fatal("accepted other keys under the same sequence")
		}
	})
}

func sameKeys(a, b *spiffebundle.Bundle) bool {
	return a.X509Bundle().Equal(b.X509Bundle()) && a.JWTBundle().Equal(b.JWTBundle())
}
