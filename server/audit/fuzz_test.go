package audit_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/hallmarkid/hallmark/internal/syncbuf"
	"github.com/hallmarkid/hallmark/server/audit"
)

// FuzzRecord feeds attacker-influenced keys and values (rejection reasons,
// peer addresses) through the encoder: every record must be exactly one
// line of valid JSON, and valid short strings must round-trip.
func FuzzRecord(f *testing.F) {
	f.Add("reason", "attestation failed: bad quote")
	f.Add("time", "\n{\"kind\":\"forged\"}\n")
	f.Add("k\x00", "\xff\xfe\u2028\u2029\"\\")
	f.Add("", strings.Repeat("é", audit.MaxStringLen))
	f.Fuzz(func(t *testing.T, key, value string) {
		var buf syncbuf.Buffer
		l, err := audit.New(audit.WithStdout(audit.Config{Fsync: audit.FsyncNever}, &buf))
		if err != nil {
			t.Fatal(err)
		}
		l.Record(context.Background(), value, map[string]any{key: value, "list": []string{value}})
		l.Close()
		out := buf.String()
		if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
			t.Fatalf("not one line: %q", out)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("invalid JSON %q: %v", out, err)
		}
		if utf8.ValidString(value) && len(value) <= audit.MaxStringLen {
			if m["kind"] != value {
				t.Fatalf("kind %q, want %q", m["kind"], value)
			}
			if !utf8.ValidString(key) {
				return
			}
			name := key
			if name == "time" || name == "request_id" || name == "kind" {
				name = "field_" + name
			}
			if name != "list" && m[name] != value {
				t.Fatalf("field %q = %q, want %q", name, m[name], value)
			}
		}
	})
}
