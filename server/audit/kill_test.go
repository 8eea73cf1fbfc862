package audit_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/server/audit"
)

const childEnv = "HALLMARK_AUDIT_KILL_CHILD"

// TestKillChild is the child half of TestKill9: it records from several
// goroutines with fsync=always and prints the count of acknowledged
// records after each Record returns, until it is killed.
func TestKillChild(t *testing.T) {
	path := os.Getenv(childEnv)
	if path == "" {
		t.Skip("child process of TestKill9 only")
	}
	l, err := audit.New(audit.Config{Path: path, Fsync: audit.FsyncAlways})
	if err != nil {
		t.Fatal(err)
	}
	var acked atomic.Int64
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				l.Record(context.Background(), "issuance", map[string]any{"g": g, "i": i})
				n := acked.Add(1)
				mu.Lock()
				out.WriteString(strconv.FormatInt(n, 10) + "\n")
				out.Flush()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// TestKill9 kills a writer with SIGKILL and checks that every record it
// acknowledged is in the file, each line whole.
func TestKill9(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		path := filepath.Join(t.TempDir(), "audit.jsonl")
		cmd := exec.Command(exe, "-test.run=^TestKillChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), childEnv+"="+path)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		var acked int64
		target := int64(200 + 300*round)
		deadline := time.Now().Add(20 * time.Second)
		for acked < target && sc.Scan() && time.Now().Before(deadline) {
			if n, err := strconv.ParseInt(sc.Text(), 10, 64); err == nil && n > acked {
				acked = n
			}
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// Lines printed before the kill landed are acknowledged too.
		for sc.Scan() {
			if n, err := strconv.ParseInt(sc.Text(), 10, 64); err == nil && n > acked {
				acked = n
			}
		}
		cmd.Wait()
		if acked < target {
			t.Fatalf("child acknowledged only %d records", acked)
		}
		got := scanWholeLines(t, path)
		if int64(got) < acked {
			t.Fatalf("round %d: %d lines on disk, %d acknowledged", round, got, acked)
		}
		t.Logf("round %d: acknowledged %d, on disk %d", round, acked, got)
	}
}

// scanWholeLines is scanLines for a file whose writer was killed: a write
// cut by SIGKILL can leave an unterminated last line, a record never
// acknowledged; it is set aside (and logged), and every terminated line
// must still decode.
func scanWholeLines(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if i := bytes.LastIndexByte(data, '\n'); i+1 < len(data) {
		t.Logf("torn unacknowledged tail of %d bytes set aside", len(data)-i-1)
		whole := filepath.Join(t.TempDir(), "whole.jsonl")
		if err := os.WriteFile(whole, data[:i+1], 0o600); err != nil {
			t.Fatal(err)
		}
		path = whole
	}
	return scanLines(t, path)
}

// TestReopenTerminatesTornTail reopens a log whose last write was cut (as
// by SIGKILL mid-record): the fragment is kept, as evidence, but ended with
// a newline so the first record of the new run is a whole line of its own.
func TestReopenTerminatesTornTail(t *testing.T) {
	for _, tc := range []struct{ name, before string }{
		{"torn", `{"kind":"issuance","i":1}` + "\n" + `{"kind":"issu`},
		{"whole", `{"kind":"issuance","i":1}` + "\n"},
		{"empty", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			if err := os.WriteFile(path, []byte(tc.before), 0o600); err != nil {
				t.Fatal(err)
			}
			var logged bytes.Buffer
			l, err := audit.New(audit.Config{Path: path, Fsync: audit.FsyncAlways, Log: slog.New(slog.NewTextHandler(&logged, nil))})
			if err != nil {
				t.Fatal(err)
			}
			l.Record(context.Background(), "issuance", map[string]any{"i": 2})
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(data, []byte(tc.before)) {
				t.Fatalf("earlier bytes changed:\n%q", data)
			}
			lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
			last := lines[len(lines)-1]
			var rec map[string]any
			if err := json.Unmarshal([]byte(last), &rec); err != nil || rec["kind"] != "issuance" {
				t.Fatalf("new record is not a whole line: %q (%v)", last, err)
			}
			torn := strings.Contains(logged.String(), "torn")
			if want := tc.name == "torn"; torn != want {
				t.Fatalf("torn-tail warning logged = %v, want %v:\n%s", torn, want, logged.String())
			}
			if tc.name == "torn" && lines[len(lines)-2] != `{"kind":"issu` {
				t.Fatalf("fragment not kept on its own line: %q", lines)
			}
		})
	}
}
