package awsnitro_test

import (
	"encoding/base64"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/attestors/awsnitro"
)

func readB64(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

var (
	realTime  = time.Date(2024, 9, 7, 14, 37, 39, 545e6, time.UTC)
	debugTime = time.Date(2024, 9, 7, 14, 38, 6, 508e6, time.UTC)
)

// TestRealDocuments verifies real AWS documents against the pinned G1 root.
func TestRealDocuments(t *testing.T) {
	real := readB64(t, "nitro-attestation-real.b64")
	debug := readB64(t, "nitro-attestation-debug-real.b64")
	tests := []struct {
		name    string
		doc     []byte
		cfg     awsnitro.ServerConfig
		now     time.Time
		wantErr string
	}{
		{name: "real document at its timestamp", doc: real, now: realTime.Add(time.Second)},
		{name: "real document today", doc: real, now: time.Now(), wantErr: "older than max_age"},
		{name: "real document today without an age bound", doc: real, cfg: awsnitro.ServerConfig{MaxAge: "876000h"}, now: time.Now(), wantErr: "expired"},
		{name: "real document with PCR policy it fails", doc: real, cfg: awsnitro.ServerConfig{PCR0: []string{strings.Repeat("00", 48)}}, now: realTime, wantErr: "PCR0"},
		{name: "debug document rejected by default", doc: debug, now: debugTime, wantErr: "debug-mode"},
		{name: "debug document allowed", doc: debug, cfg: awsnitro.ServerConfig{AllowDebug: true}, now: debugTime},
		{name: "debug document today", doc: debug, cfg: awsnitro.ServerConfig{AllowDebug: true}, now: time.Now(), wantErr: "older than max_age"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifier(t, tc.cfg, nil, tc.now)
			doc, err := v.VerifyDocument(tc.doc, awsnitro.Expect{})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(doc.ModuleID, "i-0a22e5c5f24d22174-enc") {
				t.Errorf("module_id %q", doc.ModuleID)
			}
			if len(doc.PCRs) != 16 || len(doc.CABundle) != 4 {
				t.Errorf("%d PCRs, %d CA certificates", len(doc.PCRs), len(doc.CABundle))
			}
		})
	}
}

func TestParseRealDocument(t *testing.T) {
	doc, err := awsnitro.ParseDocument(readB64(t, "nitro-attestation-real.b64"))
	if err != nil {
		t.Fatal(err)
	}
	if doc.ModuleID != "i-0a22e5c5f24d22174-enc0191cceb4289903f" {
		t.Errorf("module_id %q", doc.ModuleID)
	}
	if got := time.UnixMilli(int64(doc.Timestamp)).UTC(); !got.Equal(realTime) {
		t.Errorf("timestamp %s", got)
	}
	if string(doc.CABundle[0]) != string(awsnitro.RootG1().Raw) {
		t.Error("cabundle[0] is not G1")
	}
}

func FuzzParseDocument(f *testing.F) {
	f.Add(readB64(f, "nitro-attestation-real.b64"))
	f.Add(readB64(f, "nitro-attestation-debug-real.b64"))
	pki := newPKI(f)
	f.Add(pki.defaultSpec(make([]byte, 32), []byte("key"), t0).build(f))
	s := pki.defaultSpec(nil, nil, t0)
	s.tagged = true
	f.Add(s.build(f))
	f.Add([]byte{0x84, 0x40, 0xa0, 0x40, 0x40})
	f.Add([]byte{0x9f, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		doc, err := awsnitro.ParseDocument(b)
		if err != nil {
			return
		}
		if doc.ModuleID == "" || len(doc.CABundle) == 0 || len(doc.Nonce) > awsnitro.MaxFieldSize {
			t.Fatalf("accepted an invalid document: %+v", doc)
		}
	})
}

func BenchmarkVerifyRealDocument(b *testing.B) {
	real := readB64(b, "nitro-attestation-real.b64")
	for b.Loop() {
		// A fresh verifier each time: the replay cache refuses reuse.
		v, err := awsnitro.NewVerifier(awsnitro.ServerConfig{}, quietLog(), awsnitro.WithClock(fixedClock(realTime)))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := v.VerifyDocument(real, awsnitro.Expect{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseDocument(b *testing.B) {
	real := readB64(b, "nitro-attestation-real.b64")
	for b.Loop() {
		if _, err := awsnitro.ParseDocument(real); err != nil {
			b.Fatal(err)
		}
	}
}
