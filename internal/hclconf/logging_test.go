package hclconf_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hallmarkid/hallmark/internal/hclconf"
)

func TestNewLogger(t *testing.T) {
	tests := []struct {
		name      string
		level     string
		format    string
		wantErr   string
		wantDebug bool
		wantInfo  bool
		wantJSON  bool
	}{
		{name: "defaults", wantInfo: true},
		{name: "debug text", level: "debug", format: "text", wantDebug: true, wantInfo: true},
		{name: "upper case", level: "DEBUG", format: "JSON", wantDebug: true, wantInfo: true, wantJSON: true},
		{name: "warn json", level: "warn", format: "json", wantJSON: true},
		{name: "error", level: "error"},
		{name: "bad level", level: "verbose", wantErr: `unknown log level "verbose"`},
		{name: "bad format", format: "xml", wantErr: `unknown log format "xml"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := hclconf.NewLogger(tt.level, tt.format, &buf)
			checkErr(t, err, tt.wantErr)
			if err != nil {
				return
			}
			log.Debug("d-msg")
			log.Info("i-msg")
			out := buf.String()
			if got := strings.Contains(out, "d-msg"); got != tt.wantDebug {
				t.Errorf("debug logged = %v, want %v (%q)", got, tt.wantDebug, out)
			}
			if got := strings.Contains(out, "i-msg"); got != tt.wantInfo {
				t.Errorf("info logged = %v, want %v (%q)", got, tt.wantInfo, out)
			}
			if tt.wantInfo {
				line, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
				if got := json.Valid([]byte(line)); got != tt.wantJSON {
					t.Errorf("json = %v, want %v (%q)", got, tt.wantJSON, line)
				}
			}
		})
	}
}

func TestOpenLogger(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hallmark.log")
	for i := range 2 {
		log, closer, err := hclconf.OpenLogger("info", "json", path, os.Stderr)
		if err != nil {
			t.Fatal(err)
		}
		log.Info("hello", "n", i)
		if err := closer.Close(); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), `"msg":"hello"`); n != 2 {
		t.Fatalf("log file holds %d lines, want 2 (appended): %q", n, b)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("log file mode %v, want 0600", fi.Mode().Perm())
	}

	var buf bytes.Buffer
	log, closer, err := hclconf.OpenLogger("", "", "", &buf)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("to fallback")
	if err := closer.Close(); err != nil || !strings.Contains(buf.String(), "to fallback") {
		t.Fatalf("fallback: err %v, output %q", err, buf.String())
	}

	if _, _, err := hclconf.OpenLogger("info", "text", filepath.Join(t.TempDir(), "no", "such", "dir.log"), &buf); err == nil ||
		!strings.Contains(err.Error(), "hclconf: open log file") {
		t.Fatalf("got %v, want an open error", err)
	}
	if _, _, err := hclconf.OpenLogger("loud", "text", path, &buf); err == nil {
		t.Fatal("bad level accepted")
	}
}
