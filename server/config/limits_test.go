package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/server/config"
)

func TestNodeAPILimits(t *testing.T) {
	tests := []struct {
		name    string
		extra   string
		want    func(l *config.NodeAPILimits)
		wantErr string
	}{
		{name: "defaults"},
		{name: "all set", extra: "attestation_timeout = \"1m\"\nattestation_first_message_timeout = \"5s\"\nmax_inflight_attestations = 8\n" +
			"attestation_rate_per_source = 0.5\nattestation_burst_per_source = 3\nmax_unauthenticated_connections = 100\n" +
			"max_unauthenticated_connections_per_source = 100\nmax_unauthenticated_message_size = \"2MiB\"",
			want: func(l *config.NodeAPILimits) {
				*l = config.NodeAPILimits{AttestationTimeout: time.Minute, FirstMessageTimeout: 5 * time.Second, MaxInflightAttestations: 8,
					RatePerSource: 0.5, BurstPerSource: 3, MaxConns: 100, MaxConnsPerSource: 100, MaxMessageSize: 2 << 20}
			}},
		{name: "size in KiB", extra: `max_unauthenticated_message_size = "64KiB"`, want: func(l *config.NodeAPILimits) { l.MaxMessageSize = 64 << 10 }},
		{name: "size in bytes", extra: `max_unauthenticated_message_size = "40000B"`, want: func(l *config.NodeAPILimits) { l.MaxMessageSize = 40000 }},
		{name: "short attestation timeout lowers nothing silently", extra: `attestation_timeout = "5s"`,
			wantErr: `server.hcl:4,25-29: Conflicting settings; attestation_first_message_timeout (10s) must not exceed attestation_timeout (5s).`},
		{name: "first message above attestation", extra: "attestation_first_message_timeout = \"40s\"",
			wantErr: `server.hcl:4,39-44: Conflicting settings; attestation_first_message_timeout (40s) must not exceed attestation_timeout (30s).`},
		{name: "first message zero", extra: `attestation_first_message_timeout = "0s"`, wantErr: "greater than zero"},
		{name: "inflight zero", extra: `max_inflight_attestations = 0`, wantErr: `server.hcl:4,31-32: Invalid value; max_inflight_attestations 0 is out of range 1-16777216.`},
		{name: "inflight fraction", extra: `max_inflight_attestations = 1.5`, wantErr: "whole number"},
		{name: "inflight string", extra: `max_inflight_attestations = "64"`, wantErr: "number required, got string"},
		{name: "rate zero", extra: `attestation_rate_per_source = 0`, wantErr: "attestation_rate_per_source 0 must be greater than 0"},
		{name: "rate negative", extra: `attestation_rate_per_source = -1`, wantErr: "must be greater than 0"},
		{name: "burst zero", extra: `attestation_burst_per_source = 0`, wantErr: "attestation_burst_per_source 0 is out of range"},
		{name: "conns negative", extra: `max_unauthenticated_connections = -5`, wantErr: "out of range"},
		{name: "per source above total", extra: `max_unauthenticated_connections = 4`,
			wantErr: `server.hcl:4,37-38: Conflicting settings; max_unauthenticated_connections_per_source (8) must not exceed max_unauthenticated_connections (4).`},
		{name: "size without unit", extra: `max_unauthenticated_message_size = "524288"`, wantErr: `invalid size "524288": write a whole number with a unit`},
		{name: "size number", extra: `max_unauthenticated_message_size = 524288`, wantErr: "string required, got number"},
		{name: "size lower-case unit", extra: `max_unauthenticated_message_size = "512kb"`, wantErr: "invalid size"},
		{name: "size too small", extra: `max_unauthenticated_message_size = "16KiB"`, wantErr: "must be between 32KiB and 16MiB"},
		{name: "size too large", extra: `max_unauthenticated_message_size = "17MiB"`, wantErr: "must be between 32KiB and 16MiB"},
		{name: "size overflow", extra: `max_unauthenticated_message_size = "99999999999999999999MiB"`, wantErr: "too large"},
		{name: "misspelled key", extra: `max_inflight_attestation = 3`, wantErr: `Did you mean "max_inflight_attestations"?`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Parse("server.hcl", []byte(srv(tt.extra)))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := config.DefaultNodeAPILimits()
			if tt.want != nil {
				tt.want(&want)
			}
			if c.NodeAPI != want {
				t.Fatalf("got %+v, want %+v", c.NodeAPI, want)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int
		wantErr string
	}{
		{in: "512KiB", want: 512 << 10},
		{in: "1MiB", want: 1 << 20},
		{in: "0B", want: 0},
		{in: "", wantErr: "invalid size"},
		{in: "KiB", wantErr: "invalid size"},
		{in: "-1KiB", wantErr: "invalid size"},
		{in: "1.5MiB", wantErr: "invalid size"},
		{in: " 1MiB", wantErr: "invalid size"},
		{in: "1 MiB", wantErr: "invalid size"},
		{in: "2048MiB", wantErr: "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := config.ParseSize(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseSize(%q) = %d, %v; want error %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}
