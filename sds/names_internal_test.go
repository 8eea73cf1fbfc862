package sds

import (
	"strings"
	"testing"

	"github.com/hallmarkid/hallmark/agent/cache"
)

func testHandler(t testing.TB) *Handler {
	h, err := New(Config{Cache: cache.New(), Attestor: nilAttestor{}})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

type nilAttestor struct{ CallerAttestor }

func TestParseName(t *testing.T) {
	h := testHandler(t)
	tests := []struct {
		name    string
		in      string
		want    refKind
		wantErr string
	}{
		{name: "default", in: "default", want: refDefaultSVID},
		{name: "ROOTCA", in: "ROOTCA", want: refOwnBundle},
		{name: "ALL", in: "ALL", want: refAllBundles},
		{name: "SPIFFE ID", in: "spiffe://example.org/ns/a/sa/b", want: refSVID},
		{name: "trust domain", in: "spiffe://example.org", want: refBundle},
		{name: "file-root", in: "file-root:/etc/certs/root-cert.pem", want: refFileRoot},
		{name: "file-cert", in: "file-cert:/etc/certs/cert-chain.pem~/etc/certs/key.pem", want: refFileCert},
		{name: "empty file-root", in: "file-root:", wantErr: "want file-root:<path>"},
		{name: "file-cert without key", in: "file-cert:/a", wantErr: "want file-cert"},
		{name: "file-cert with two tildes", in: "file-cert:/a~/b~/c", wantErr: "want file-cert"},
		{name: "dot segment", in: "spiffe://example.org/a/../b", wantErr: "resource name"},
		{name: "uppercase domain", in: "spiffe://Example.org/a", wantErr: "resource name"},
		{name: "query", in: "spiffe://example.org/a?x", wantErr: "resource name"},
		{name: "unknown", in: "rootca", wantErr: "unknown resource name"},
		{name: "empty", in: "", wantErr: "unknown resource name"},
		{name: "too long", in: "file-root:/" + strings.Repeat("a", maxNameLen), wantErr: "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := h.parseName(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || r.kind != tt.want {
				t.Fatalf("kind %d err %v, want %d", r.kind, err, tt.want)
			}
		})
	}
	if _, err := h.parseNames(make([]string, maxNames+1)); err == nil {
		t.Fatal("more than maxNames names accepted")
	}
}

func FuzzParseName(f *testing.F) {
	h := testHandler(f)
	for _, s := range []string{"default", "ROOTCA", "ALL", "spiffe://example.org", "spiffe://example.org/a/b",
		"file-root:/a", "file-cert:/a~/b", "file-cert:~", "spiffe://%41/b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := h.parseName(s)
		if err != nil {
			return
		}
		if r.name != s {
			t.Fatalf("name %q became %q", s, r.name)
		}
		switch r.kind {
		case refSVID:
			if r.id.String() != s {
				t.Fatalf("SPIFFE ID %q parsed as %q", s, r.id)
			}
		case refFileCert:
			if r.cert == "" || r.key == "" || strings.Contains(r.key, "~") {
				t.Fatalf("file-cert %q: cert %q key %q", s, r.cert, r.key)
			}
		}
	})
}
