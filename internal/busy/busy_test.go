package busy_test

import (
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/internal/busy"
)

func TestRefusalRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name   string
		window time.Duration
		want   time.Duration
	}{
		{"zero is one unit", 0, busy.Unit},
		{"rounded up", 150 * time.Millisecond, 200 * time.Millisecond},
		{"exact", 2 * time.Second, 2 * time.Second},
		{"capped", time.Minute, busy.MaxWindow},
		{"negative is one unit", -time.Second, busy.Unit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := busy.Refusal(tc.window)
			got, ok := busy.Parse(r[:])
			if !ok || got != tc.want {
				t.Fatalf("Parse(Refusal(%v)) = %v, %v; want %v, true", tc.window, got, ok, tc.want)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"short", []byte("BUSY")},
		{"long", []byte("BUSY\x01\x00")},
		{"zero window", []byte("BUSY\x00")},
		{"other magic", []byte("BUSZ\x01")},
		// A real TLS record header (a ServerHello): never a refusal.
		{"tls handshake record", []byte{0x16, 0x03, 0x03, 0x00, 0x7a}},
		{"tls alert record", []byte{0x15, 0x03, 0x03, 0x00, 0x02}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if d, ok := busy.Parse(tc.b); ok {
				t.Fatalf("Parse(%q) = %v, true; want not a refusal", tc.b, d)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	r := busy.Refusal(time.Second)
	f.Add(r[:])
	f.Add([]byte{0x16, 0x03, 0x01, 0x02, 0x00})
	f.Add([]byte("BUSY\x00"))
	f.Add([]byte("BUSY\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, ok := busy.Parse(b)
		if !ok {
			return
		}
		if d < busy.Unit || d > busy.MaxWindow {
			t.Fatalf("Parse(%q) = %v: outside [%v, %v]", b, d, busy.Unit, busy.MaxWindow)
		}
		if r := busy.Refusal(d); string(r[:]) != string(b) {
			t.Fatalf("Refusal(Parse(%q)) = %q", b, r)
		}
	})
}
