package federation_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"

	"github.com/hallmarkid/hallmark/server/federation"
)

func TestParseBundle(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "a.test")
	valid, err := os.ReadFile("testdata/go-spiffe-valid-x509-and-jwt.json")
	if err != nil {
		t.Fatal(err)
	}
	readFile := func(name string) string {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	own, _ := federation.MarshalBundle(ca.spiffeBundle(3))
	tests := []struct {
		name, doc   string
		td          string // default a.test
		wantErr     string
		wantX509    int
		wantJWT     int
		wantHint    time.Duration
		wantHasHint bool
	}{
		{name: "go-spiffe fixture", doc: string(valid), td: "local", wantX509: 1, wantJWT: 6, wantHint: time.Minute, wantHasHint: true},
		{name: "go-spiffe fixture for another trust domain", doc: string(valid), wantErr: `names "spiffe://local", not trust domain "a.test"`},
		{name: "our own marshalling", doc: string(own), wantX509: 1},
		{name: "empty keys", doc: `{"keys":[]}`},
		{name: "unknown use is ignored", doc: `{"keys":[{"use":"other","kty":"oct","k":"AA"}]}`},
		{name: "whitespace around", doc: " \n{\"keys\":[]}\n "},
		{name: "negative hint reads as zero", doc: `{"keys":[],"spiffe_refresh_hint":-5}`, wantHasHint: true},
		{name: "huge hint reads as a year", doc: `{"keys":[],"spiffe_refresh_hint":9223372036854775807}`,
			wantHint: 365 * 24 * time.Hour, wantHasHint: true},
		{name: "two certificates in x5c", doc: readFile("go-spiffe-two-certs-in-x5c.json"), wantErr: "expected a single certificate"},
		{name: "jwt key without kid", doc: readFile("go-spiffe-jwt-key-without-kid.json"), wantErr: "keyID cannot be empty"},
		{name: "authority of another trust domain", doc: mustMarshal(t, newCA(t, "a.test", "spiffe://b.test").spiffeBundle(1)),
			wantErr: `names "spiffe://b.test", not trust domain "a.test"`},
		{name: "authority with a workload ID of another trust domain", doc: mustMarshal(t, newCA(t, "a.test", "spiffe://b.test/x").spiffeBundle(1)),
			wantErr: "not trust domain"},
		{name: "empty", doc: ``, wantErr: "parse bundle"},
		{name: "null", doc: `null`, wantErr: "not a JSON object"},
		{name: "array", doc: `[]`, wantErr: "parse bundle"},
		{name: "keys an object", doc: `{"keys":{}}`, wantErr: `"keys" must be an array`},
		{name: "keys missing", doc: `{}`, wantErr: `"keys" must be an array`},
		{name: "negative sequence", doc: `{"keys":[],"spiffe_sequence":-1}`, wantErr: "parse bundle"},
		{name: "fractional hint", doc: `{"keys":[],"spiffe_refresh_hint":1.5}`, wantErr: "parse bundle"},
		{name: "string sequence", doc: `{"keys":[],"spiffe_sequence":"1"}`, wantErr: "parse bundle"},
		{name: "trailing garbage", doc: `{"keys":[]} x`, wantErr: "parse bundle"},
		{name: "oversized", doc: `{"keys":[]}` + strings.Repeat(" ", federation.MaxBundleSize), wantErr: "larger than the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			trust := td("a.test")
			if tt.td != "" {
				trust = td(tt.td)
			}
			b, err := federation.ParseBundle(trust, []byte(tt.doc))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(b.X509Authorities()) != tt.wantX509 || len(b.JWTAuthorities()) != tt.wantJWT {
				t.Errorf("%d X.509 and %d JWT authorities", len(b.X509Authorities()), len(b.JWTAuthorities()))
			}
			if hint, ok := b.RefreshHint(); hint != tt.wantHint || ok != tt.wantHasHint {
				t.Errorf("refresh hint %v %v", hint, ok)
			}
			// Marshal and parse again: the same bundle.
			again, err := federation.ParseBundle(trust, []byte(mustMarshal(t, b)))
			if err != nil || !again.Equal(b) {
				t.Errorf("round trip: %v", err)
			}
		})
	}
}

func TestMarshalBundleIsStable(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/go-spiffe-valid-x509-and-jwt.json")
	if err != nil {
		t.Fatal(err)
	}
	b, err := federation.ParseBundle(td("local"), data)
	if err != nil {
		t.Fatal(err)
	}
	first := mustMarshal(t, b)
	for range 20 {
		if got := mustMarshal(t, b.Clone()); got != first {
			t.Fatal("MarshalBundle output depends on map order")
		}
	}
	if got := mustMarshal(t, spiffebundle.New(td("a.test"))); got != `{"keys":[]}` {
		t.Errorf("empty bundle marshals as %s", got)
	}
}

func TestLoadBundleFile(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "a.test")
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pemPath := filepath.Join(dir, "ca.pem")
	writePEM(t, pemPath, "CERTIFICATE", ca.cert.Raw)
	spiffePath := write("bundle.json", mustMarshal(t, ca.spiffeBundle(4)))
	otherTD := filepath.Join(dir, "other.pem")
	writePEM(t, otherTD, "CERTIFICATE", newCA(t, "b.test").cert.Raw)
	keyPath := filepath.Join(dir, "key.pem")
	writePEM(t, keyPath, "PRIVATE KEY", []byte{1, 2, 3})
	tests := []struct {
		name, path, format string
		wantErr            string
		wantSeq            bool
	}{
		{name: "pem detected", path: pemPath},
		{name: "pem", path: pemPath, format: "pem"},
		{name: "spiffe detected", path: spiffePath, wantSeq: true},
		{name: "spiffe", path: spiffePath, format: "spiffe", wantSeq: true},
		{name: "spiffe read as pem", path: spiffePath, format: "pem", wantErr: "no PEM certificates"},
		{name: "pem read as spiffe", path: pemPath, format: "spiffe", wantErr: "parse bundle"},
		{name: "unknown format", path: pemPath, format: "der", wantErr: `format "der"`},
		{name: "missing", path: filepath.Join(dir, "missing"), wantErr: "no such file"},
		{name: "empty", path: write("empty", ""), wantErr: "no PEM certificates"},
		{name: "key, not certificate", path: keyPath, wantErr: `unexpected PEM block "PRIVATE KEY"`},
		{name: "another trust domain", path: otherTD, wantErr: "not trust domain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := federation.LoadBundleFile(td("a.test"), tt.path, tt.format)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !hasAuthority(b, ca.cert) || len(b.X509Authorities()) != 1 {
				t.Error("wrong authorities")
			}
			if _, ok := b.SequenceNumber(); ok != tt.wantSeq {
				t.Errorf("has sequence %v", ok)
			}
		})
	}
}

func mustMarshal(t testing.TB, b *spiffebundle.Bundle) string {
	t.Helper()
	data, err := federation.MarshalBundle(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
