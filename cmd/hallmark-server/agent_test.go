package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
)

func TestAgentFilterFlags(t *testing.T) {
	yes, no := true, false
	when := time.Date(2030, 5, 6, 7, 8, 9, 0, time.FixedZone("", -7*3600))
	tests := []struct {
		name    string
		args    []string
		want    *apiv1.AgentFilter
		wantErr string
	}{
		{name: "none", want: &apiv1.AgentFilter{}},
		{name: "every filter", args: []string{"-attestationType", "tpm", "-banned", "true", "-canReattest", "false",
			"-expiresBefore", "2030-05-06 07:08:09 -0700 -07", "-selector", "tpm:ek-hash:x", "-selector", "tpm:pcr:sha256:7:00",
			"-matchSelectorsOn", "any"},
			want: &apiv1.AgentFilter{ByAttestationType: "tpm", ByBanned: &yes, ByCanReattest: &no, ByExpiresBefore: when.Unix(),
				BySelectors:   []*apiv1.Selector{{Type: "tpm", Value: "ek-hash:x"}, {Type: "tpm", Value: "pcr:sha256:7:00"}},
				SelectorMatch: apiv1.SelectorMatch_SELECTOR_MATCH_ANY}},
		{name: "RFC 3339", args: []string{"-expiresBefore", "2030-05-06T07:08:09-07:00"}, want: &apiv1.AgentFilter{ByExpiresBefore: when.Unix()}},
		{name: "date", args: []string{"-expiresBefore", "2030-05-06", "-banned", "false"},
			want: &apiv1.AgentFilter{ByExpiresBefore: time.Date(2030, 5, 6, 0, 0, 0, 0, time.UTC).Unix(), ByBanned: &no}},
		{name: "bad banned", args: []string{"-banned", "maybe"}, wantErr: `-banned "maybe"`},
		{name: "bad canReattest", args: []string{"-canReattest", "yes please"}, wantErr: "-canReattest"},
		{name: "bad time", args: []string{"-expiresBefore", "tomorrow"}, wantErr: "-expiresBefore"},
		{name: "bad match", args: []string{"-matchSelectorsOn", "most"}, wantErr: "-matchSelectorsOn"},
		{name: "bad selector", args: []string{"-selector", "nocolon"}, wantErr: "selector"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := newFlagSet("agent list")
			build := agentFilterFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			got, err := build()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tt.want) {
				t.Fatalf("filter = %v, want %v", got, tt.want)
			}
		})
	}
}

// The JSON shape is SPIRE's: id as {trust_domain, path}, 64-bit integers
// as strings, every field present.
func TestAgentJSONShape(t *testing.T) {
	var buf bytes.Buffer
	a := &apiv1.Agent{SpiffeId: "spiffe://example.org/agent/tpm/abc", AttestationType: "tpm", X509SvidSerialNumber: "42",
		X509SvidExpiresAt: 1900000000, Selectors: []*apiv1.Selector{{Type: "tpm", Value: "ek-hash:abc"}}, CanReattest: true}
	if err := writeJSON(&buf, toAgentJSON(a)); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"id":                     map[string]any{"trust_domain": "example.org", "path": "/agent/tpm/abc"},
		"attestation_type":       "tpm",
		"x509svid_serial_number": "42",
		"x509svid_expires_at":    "1900000000",
		"selectors":              []any{map[string]any{"type": "tpm", "value": "ek-hash:abc"}},
		"banned":                 false,
		"can_reattest":           true,
	}
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if !bytes.Equal(gb, wb) {
		t.Fatalf("agent JSON:\n%s\nwant\n%s", gb, wb)
	}
}
