package audit_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/internal/syncbuf"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/server/audit"
)

var fixed = time.Date(2026, 3, 1, 12, 30, 45, 123456789, time.FixedZone("CET", 3600))

func newLog(t testing.TB, cfg audit.Config) *audit.Log {
	t.Helper()
	l, err := audit.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func readLines(t testing.TB, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Fatalf("file does not end with a newline: %q", data[max(0, len(data)-80):])
	}
	s := strings.TrimSuffix(string(data), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func decode(t testing.TB, line string) map[string]any {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(line))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("line is not a JSON object: %v: %q", err, line)
	}
	if dec.More() {
		t.Fatalf("trailing data after the object: %q", line)
	}
	return m
}

func TestRecordContent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := newLog(t, audit.Config{Path: path, Fsync: audit.FsyncAlways, Clock: func() time.Time { return fixed }})
	ctx := audit.WithRequestID(context.Background(), "req-1")
	l.Record(ctx, "attestation", map[string]any{
		"result":            "accepted",
		"attestor":          "tpm",
		"agent_id":          "spiffe://example.org/agent/tpm/abc",
		"selectors":         []string{"tpm:ek-hash:abc"},
		"renewal":           false,
		"peer":              "127.0.0.1:5000",
		"evidence.ek_hash":  "abc",
		"evidence.pcr7":     "00ff",
		"serial":            "1234",
		"expires_at":        "2026-03-01T12:30:45Z",
		"kind":              "spoofed",
		"time":              "spoofed",
		"evidence.pcr_bank": "sha256",
	})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, path)
	if len(lines) != 1 {
		t.Fatalf("got %d lines, want 1", len(lines))
	}
	want := `{"time":"2026-03-01T11:30:45.123456789Z","request_id":"req-1","kind":"attestation",` +
		`"agent_id":"spiffe://example.org/agent/tpm/abc","attestor":"tpm","evidence.ek_hash":"abc",` +
		`"evidence.pcr7":"00ff","evidence.pcr_bank":"sha256","expires_at":"2026-03-01T12:30:45Z",` +
		`"field_kind":"spoofed","field_time":"spoofed","peer":"127.0.0.1:5000","renewal":false,` +
		`"result":"accepted","selectors":["tpm:ek-hash:abc"],"serial":"1234"}`
	if lines[0] != want {
		t.Errorf("line:\n got %s\nwant %s", lines[0], want)
	}
	if st := l.Stats(); st != (audit.Stats{Written: 1}) {
		t.Errorf("stats = %+v", st)
	}
}

type panicky struct{}

func (*panicky) String() string { panic("boom") }

type jsonish struct{ A int }

func TestValueEncoding(t *testing.T) {
	long := strings.Repeat("é", audit.MaxStringLen) // 2 bytes each
	tests := []struct {
		name  string
		value any
		want  string // JSON of the "v" field
	}{
		{name: "nil", value: nil, want: `null`},
		{name: "string escapes", value: "a\"b\\c\nd\te\x01\u2028", want: `"a\"b\\c\nd\te\u0001\u2028"`},
		{name: "invalid utf8", value: "a\xffb", want: `"a\ufffdb"`},
		{name: "ints", value: []any{1, int64(-2), uint64(3), int32(4)}, want: `[1,-2,3,4]`},
		{name: "float", value: 1.5, want: `1.5`},
		{name: "nan", value: []any{nanValue()}, want: `["NaN"]`},
		{name: "bool", value: true, want: `true`},
		{name: "time in UTC", value: fixed, want: `"2026-03-01T11:30:45.123456789Z"`},
		{name: "duration in seconds", value: 1500 * time.Millisecond, want: `1.5`},
		{name: "bytes as hex", value: []byte{0xde, 0xad}, want: `"dead"`},
		{name: "sorted map", value: map[string]string{"b": "2", "a": "1"}, want: `{"a":"1","b":"2"}`},
		{name: "nested", value: map[string]any{"x": []string{"y"}}, want: `{"x":["y"]}`},
		{name: "stringer", value: spiffeid.RequireFromString("spiffe://example.org/w"), want: `"spiffe://example.org/w"`},
		{name: "error", value: errors.New("nope"), want: `"nope"`},
		{name: "struct via json", value: jsonish{A: 1}, want: `{"A":1}`},
		{name: "unencodable", value: make(chan int), want: `"!unencodable chan int"`},
		{name: "truncated", value: long, want: `"` + long[:audit.MaxStringLen] + `…[truncated]"`},
		{name: "panicking stringer", value: &panicky{}, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf syncbuf.Buffer
			l := newLog(t, audit.WithStdout(audit.Config{Fsync: audit.FsyncNever}, &buf))
			l.Record(context.Background(), "test", map[string]any{"v": tt.value})
			l.Close()
			line := strings.TrimSuffix(buf.String(), "\n")
			m := decode(t, line)
			if tt.want == "" {
				if _, ok := m["audit_error"]; !ok {
					t.Fatalf("want an audit_error field: %s", line)
				}
				return
			}
			if _, after, ok := strings.Cut(line, `"v":`); !ok || after != tt.want+"}" {
				t.Errorf("got %s, want \"v\":%s}", line, tt.want)
			}
		})
	}
}

func nanValue() float64 { var z float64; return z / z }

func TestRequestIDGeneratedWhenAbsent(t *testing.T) {
	var buf syncbuf.Buffer
	l := newLog(t, audit.WithStdout(audit.Config{}, &buf))
	l.Record(context.Background(), "admin", nil)
	ctx, id := audit.EnsureRequestID(context.Background())
	l.Record(ctx, "admin", nil)
	l.Record(ctx, "admin", nil)
	l.Close()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines", len(lines))
	}
	var ids []string
	for _, line := range lines {
		ids = append(ids, decode(t, line)["request_id"].(string))
	}
	if len(ids[0]) != 32 || ids[0] == id {
		t.Errorf("generated ID %q", ids[0])
	}
	if ids[1] != id || ids[2] != id {
		t.Errorf("IDs %q, want %q twice", ids[1:], id)
	}
}

func TestConcurrentWriters(t *testing.T) {
	const goroutines, each = 100, 100
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := newLog(t, audit.Config{Path: path, Fsync: audit.FsyncInterval})
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				l.Record(context.Background(), "issuance", map[string]any{
					"g": g, "i": i, "spiffe_id": fmt.Sprintf("spiffe://example.org/w/%d/%d", g, i),
					"padding": strings.Repeat("x", (g*each+i)%500),
				})
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, path)
	if len(lines) != goroutines*each {
		t.Fatalf("got %d lines, want %d", len(lines), goroutines*each)
	}
	seen := make(map[string]bool, len(lines))
	for _, line := range lines {
		m := decode(t, line)
		key := fmt.Sprint(m["g"], "/", m["i"])
		if seen[key] {
			t.Fatalf("record %s twice", key)
		}
		seen[key] = true
		if m["spiffe_id"] != fmt.Sprintf("spiffe://example.org/w/%s", key) {
			t.Fatalf("fields mixed up: %s", line)
		}
	}
	if st := l.Stats(); st.Written != goroutines*each || st.Failed != 0 || st.Dropped != 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestFsyncModes(t *testing.T) {
	tests := []struct {
		name      string
		fsync     string
		wantSyncs func(n uint64) bool
	}{
		{name: "always syncs before Record returns", fsync: audit.FsyncAlways, wantSyncs: func(n uint64) bool { return n >= 1 }},
		{name: "interval syncs in the background", fsync: audit.FsyncInterval, wantSyncs: func(n uint64) bool { return n >= 1 }},
		{name: "never syncs", fsync: audit.FsyncNever, wantSyncs: func(n uint64) bool { return n == 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			l := newLog(t, audit.WithFsyncInterval(audit.Config{Path: path, Fsync: tt.fsync}, 10*time.Millisecond))
			l.Record(context.Background(), "admin", map[string]any{"action": "x"})
			switch tt.fsync {
			case audit.FsyncAlways:
				if got := len(readLines(t, path)); got != 1 {
					t.Fatalf("after Record returned: %d lines on disk, want 1", got)
				}
			case audit.FsyncInterval:
				deadline := time.Now().Add(5 * time.Second)
				for l.Syncs() == 0 && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
				}
			}
			if !tt.wantSyncs(l.Syncs()) {
				t.Errorf("before Close: %d syncs", l.Syncs())
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if !tt.wantSyncs(l.Syncs()) {
				t.Errorf("after Close: %d syncs", l.Syncs())
			}
			if got := len(readLines(t, path)); got != 1 {
				t.Errorf("%d lines, want 1", got)
			}
		})
	}
}

func TestCloseKeepsEveryRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := newLog(t, audit.Config{Path: path, Fsync: audit.FsyncNever})
	for i := range 20000 {
		l.Record(context.Background(), "admin", map[string]any{"i": i})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	l.Record(context.Background(), "admin", nil) // dropped, no panic
	if got := len(readLines(t, path)); got != 20000 {
		t.Fatalf("%d lines, want 20000", got)
	}
	if st := l.Stats(); st.Written != 20000 || st.Dropped != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestReopenAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "audit.jsonl")
	for i := range 3 {
		l, err := audit.New(audit.Config{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		l.Record(context.Background(), "admin", map[string]any{"run": i})
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	lines := readLines(t, path)
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3", len(lines))
	}
	for i, line := range lines {
		if got := decode(t, line)["run"]; fmt.Sprint(got) != fmt.Sprint(i) {
			t.Errorf("line %d: run = %v", i, got)
		}
	}
	for p, want := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), want)
		}
	}
}

func TestNewRejects(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(dir, "dangling")
	if err := os.Symlink(filepath.Join(dir, "nowhere"), dangling); err != nil {
		t.Fatal(err)
	}
	worldWritable := filepath.Join(dir, "ww")
	if err := os.WriteFile(worldWritable, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(worldWritable, 0o666); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     audit.Config
		wantErr string
	}{
		{name: "symlink", cfg: audit.Config{Path: link}, wantErr: "symbolic link"},
		{name: "dangling symlink", cfg: audit.Config{Path: dangling}, wantErr: "symbolic link"},
		{name: "directory", cfg: audit.Config{Path: dir}, wantErr: "audit: open"},
		{name: "world-writable", cfg: audit.Config{Path: worldWritable}, wantErr: "world-writable"},
		{name: "no destination", cfg: audit.Config{}, wantErr: "no destination"},
		{name: "bad fsync", cfg: audit.Config{Stdout: true, Fsync: "sometimes"}, wantErr: `fsync "sometimes"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := audit.New(tt.cfg)
			if err == nil {
				l.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q, want %q", err, tt.wantErr)
			}
		})
	}
	if data, _ := os.ReadFile(target); len(data) != 0 {
		t.Error("the symlink target was written")
	}
}

func TestHCLConfig(t *testing.T) {
	tests := []struct {
		name    string
		h       audit.HCLConfig
		want    audit.Config
		wantErr string
	}{
		{name: "file", h: audit.HCLConfig{Path: "/a", Fsync: "always"}, want: audit.Config{Path: "/a", Fsync: "always"}},
		{name: "stdout", h: audit.HCLConfig{Stdout: true}, want: audit.Config{Stdout: true}},
		{name: "empty", h: audit.HCLConfig{}, wantErr: "needs path"},
		{name: "bad fsync", h: audit.HCLConfig{Stdout: true, Fsync: "often"}, wantErr: "fsync"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.h.Config()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Path != tt.want.Path || got.Stdout != tt.want.Stdout || got.Fsync != tt.want.Fsync {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestWriteErrorsAreCounted(t *testing.T) {
	l := newLog(t, audit.WithStdout(audit.Config{}, failingWriter{}))
	for range 10 {
		l.Record(context.Background(), "admin", nil)
	}
	l.Close()
	if st := l.Stats(); st.Failed != 10 || st.Written != 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestNilLog(t *testing.T) {
	var l *audit.Log
	l.Record(context.Background(), "admin", nil)
	if err := l.Close(); err != nil || l.Stats() != (audit.Stats{}) {
		t.Fatal("nil Log is not a no-op")
	}
}

// scanLines counts complete lines and checks each is JSON.
func scanLines(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		decode(t, sc.Text())
		n++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}
