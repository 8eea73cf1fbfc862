package main

import (
	"runtime/debug"
	"testing"
)

// TestMemoryPolicy: the server collects at +50 % by default, and GOGC in
// the environment wins (the runtime has already applied it).
func TestMemoryPolicy(t *testing.T) {
	tests := []struct {
		name        string
		env         map[string]string
		wantGOGC    string
		wantSource  string
		wantPercent int
	}{
		{name: "default", env: map[string]string{}, wantGOGC: "50", wantSource: "default", wantPercent: serverGCPercent},
		{name: "GOGC set", env: map[string]string{"GOGC": "200"}, wantGOGC: "200", wantSource: "environment", wantPercent: 100},
		{name: "GOGC off", env: map[string]string{"GOGC": "off"}, wantGOGC: "off", wantSource: "environment", wantPercent: 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prev := debug.SetGCPercent(100) // stands in for what the runtime read from GOGC
			gogc, source := memoryPolicy(func(k string) string { return tt.env[k] })
			got := debug.SetGCPercent(prev)
			if gogc != tt.wantGOGC || source != tt.wantSource || got != tt.wantPercent {
				t.Errorf("memoryPolicy = %q, %q with GC percent %d; want %q, %q, %d", gogc, source, got, tt.wantGOGC, tt.wantSource, tt.wantPercent)
			}
		})
	}
}
