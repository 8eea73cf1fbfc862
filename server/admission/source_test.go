package admission

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestSourceOf(t *testing.T) {
	tests := []struct {
		name   string
		addr   net.Addr
		want   string
		wantOK bool
	}{
		{name: "ipv4", addr: &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 443}, want: "192.0.2.7/32", wantOK: true},
		{name: "ipv4-mapped ipv6 is the ipv4 address", addr: &net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 1}, want: "192.0.2.7/32", wantOK: true},
		{name: "ipv6 by /64", addr: &net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), Port: 1}, want: "2001:db8:1:2::/64", wantOK: true},
		{name: "ipv6 with zone", addr: &net.TCPAddr{IP: net.ParseIP("fe80::1"), Zone: "eth0", Port: 1}, want: "fe80::/64", wantOK: true},
		{name: "string form", addr: &net.UDPAddr{IP: net.ParseIP("198.51.100.1"), Port: 5}, want: "198.51.100.1/32", wantOK: true},
		{name: "unix socket", addr: &net.UnixAddr{Name: "/tmp/x", Net: "unix"}},
		{name: "no IP", addr: &net.TCPAddr{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := SourceOf(tt.addr)
			if ok != tt.wantOK || (ok && got.String() != tt.want) {
				t.Fatalf("SourceOf(%v) = %v, %v; want %s, %v", tt.addr, got, ok, tt.want, tt.wantOK)
			}
		})
	}
	// Two addresses of one /64 are one source; of two /64s, two.
	a, _ := SourceOf(&net.TCPAddr{IP: net.ParseIP("2001:db8::1")})
	b, _ := SourceOf(&net.TCPAddr{IP: net.ParseIP("2001:db8::ffff:2")})
	c, _ := SourceOf(&net.TCPAddr{IP: net.ParseIP("2001:db8:0:1::1")})
	if a != b || a == c {
		t.Fatalf("sources %v %v %v", a, b, c)
	}
}

func TestBuckets(t *testing.T) {
	b := newBuckets(2, 3) // 2/s, burst 3
	src := netip.MustParsePrefix("192.0.2.1/32")
	other := netip.MustParsePrefix("192.0.2.2/32")
	t0 := time.Unix(1_000_000, 0)
	for i := range 3 {
		if !b.take(src, t0) {
			t.Fatalf("take %d within the burst refused", i)
		}
	}
	if b.take(src, t0) {
		t.Fatal("take past the burst allowed")
	}
	if !b.take(other, t0) {
		t.Fatal("another source refused")
	}
	if b.take(src, t0.Add(400*time.Millisecond)) {
		t.Fatal("0.8 tokens refilled, yet a take was allowed")
	}
	if !b.take(src, t0.Add(500*time.Millisecond)) {
		t.Fatal("one token refilled after 0.5 s, yet refused")
	}
	// A clock going backwards refills nothing.
	if b.take(src, t0) {
		t.Fatal("take allowed with the clock moved back")
	}
	// Refilled buckets are pruned; others are kept.
	b.prune(t0.Add(time.Second))
	if b.len() != 1 {
		t.Fatalf("%d buckets after pruning, want 1 (src still refilling)", b.len())
	}
	b.prune(t0.Add(time.Minute))
	if b.len() != 0 {
		t.Fatalf("%d buckets after a minute, want 0", b.len())
	}
}

// Past maxBuckets sources within one refill period, unknown sources are
// refused (fail closed) while known ones keep their buckets.
func TestBucketsBoundedTable(t *testing.T) {
	b := newBuckets(1, 10) // a token refills in 1 s
	t0 := time.Unix(1_000_000, 0)
	for i := range maxBuckets {
		var a [4]byte
		a[0], a[1], a[2], a[3] = 10, byte(i>>16), byte(i>>8), byte(i)
		if !b.take(netip.PrefixFrom(netip.AddrFrom4(a), 32), t0) {
			t.Fatalf("source %d refused", i)
		}
	}
	newcomer := netip.MustParsePrefix("192.0.2.99/32")
	if b.take(newcomer, t0.Add(100*time.Millisecond)) {
		t.Fatal("a new source was admitted past the table bound")
	}
	if !b.take(netip.MustParsePrefix("10.0.0.5/32"), t0.Add(100*time.Millisecond)) {
		t.Fatal("a known source was refused")
	}
	// Once the table's buckets have refilled, they make room.
	if !b.take(newcomer, t0.Add(20*time.Second)) {
		t.Fatal("a new source refused after the table refilled")
	}
}

func TestLimitsValidate(t *testing.T) {
	tests := []struct {
		name    string
		change  func(l *Limits)
		wantErr string
	}{
		{name: "defaults", change: func(*Limits) {}},
		{name: "no inflight", change: func(l *Limits) { l.MaxInflightAttestations = 0 }, wantErr: "in-flight"},
		{name: "zero rate", change: func(l *Limits) { l.AttestationRatePerSource = 0 }, wantErr: "rate"},
		{name: "zero burst", change: func(l *Limits) { l.AttestationBurstPerSource = 0 }, wantErr: "burst"},
		{name: "no conns", change: func(l *Limits) { l.MaxConns = 0 }, wantErr: "connection limits"},
		{name: "per source above total", change: func(l *Limits) { l.MaxConnsPerSource = l.MaxConns + 1 }, wantErr: "exceed the total"},
		{name: "tiny messages", change: func(l *Limits) { l.MaxMessageSize = 1024 }, wantErr: "message size"},
		{name: "huge messages", change: func(l *Limits) { l.MaxMessageSize = 64 << 20 }, wantErr: "message size"},
		{name: "no timeout", change: func(l *Limits) { l.FirstMessageTimeout = 0 }, wantErr: "timeouts"},
		{name: "first after whole", change: func(l *Limits) { l.FirstMessageTimeout = time.Minute }, wantErr: "exceeds the attestation timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := DefaultLimits()
			tt.change(&l)
			err := l.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
}
