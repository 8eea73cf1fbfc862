package busy_test

import (
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

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

func TestStopWindow(t *testing.T) {
	for _, tc := range []struct {
		name   string
		md     metadata.MD
		want   time.Duration
		wantOK bool
	}{
		{"round trip", busy.StopTrailerMD(1234 * time.Millisecond), 1234 * time.Millisecond, true},
		{"zero", busy.StopTrailerMD(0), 0, true},
		{"negative written as zero", busy.StopTrailerMD(-time.Second), 0, true},
		{"none", metadata.MD{}, 0, false},
		{"two values", metadata.Pairs(busy.StopTrailer, "1", busy.StopTrailer, "2"), 0, false},
		{"not a number", metadata.Pairs(busy.StopTrailer, "1s"), 0, false},
		{"signed", metadata.Pairs(busy.StopTrailer, "+5"), 5 * time.Millisecond, true},
		{"negative", metadata.Pairs(busy.StopTrailer, "-5"), 0, false},
		{"beyond the cap", metadata.Pairs(busy.StopTrailer, "25501"), 0, false},
		{"huge", metadata.Pairs(busy.StopTrailer, "99999999999999999999"), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := busy.StopWindow(tc.md)
			if got != tc.want || ok != tc.wantOK {
				t.Fatalf("StopWindow = %v, %v; want %v, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func FuzzStopWindow(f *testing.F) {
	f.Add("1234")
	f.Add("0")
	f.Add("-1")
	f.Add("25500")
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := busy.StopWindow(metadata.Pairs(busy.StopTrailer, v))
		if ok && (d < 0 || d > busy.MaxWindow) {
			t.Fatalf("StopWindow(%q) = %v: outside [0, %v]", v, d, busy.MaxWindow)
		}
	})
}
