package pidlock_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hallmarkid/hallmark/internal/pidlock"
)

func TestAcquireRelease(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	l, err := pidlock.Acquire(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); got != strconv.Itoa(os.Getpid()) {
		t.Errorf("lock file holds %q, want our pid", got)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %o, want 600", fi.Mode().Perm())
	}

	// A second holder (a second open file description, as in a second
	// process) is refused and told who holds it.
	_, err = pidlock.Acquire(path)
	var held *pidlock.HeldError
	if !errors.As(err, &held) {
		t.Fatalf("second Acquire: %v, want *HeldError", err)
	}
	if held.PID != os.Getpid() || held.Path != path {
		t.Errorf("HeldError %+v", held)
	}
	if !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Errorf("error %q does not name the pid", err)
	}

	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	l2, err := pidlock.Acquire(path)
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	l2.Release()
}

func TestAcquireRefuses(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		setup   func(t *testing.T) string
		wantErr string
	}{
		{name: "symlink", setup: func(t *testing.T) string {
			p := filepath.Join(dir, "link")
			if err := os.Symlink(filepath.Join(dir, "target"), p); err != nil {
				t.Fatal(err)
			}
			return p
		}, wantErr: "symbolic link"},
		{name: "directory", setup: func(t *testing.T) string {
			p := filepath.Join(dir, "d")
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
			return p
		}, wantErr: "pidlock:"},
		{name: "missing directory", setup: func(t *testing.T) string {
			return filepath.Join(dir, "nope", "lock")
		}, wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := pidlock.Acquire(tt.setup(t))
			if err == nil {
				l.Release()
				t.Fatal("Acquire succeeded")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q, want %q", err, tt.wantErr)
			}
		})
	}
	if _, err := os.Lstat(filepath.Join(dir, "target")); !os.IsNotExist(err) {
		t.Errorf("something was created through the symlink: %v", err)
	}
}

// A garbled lock file still gives a HeldError, without a PID.
func TestHeldWithoutPID(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	l, err := pidlock.Acquire(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if err := os.WriteFile(path, []byte("garbage that is not a pid\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = pidlock.Acquire(path)
	var held *pidlock.HeldError
	if !errors.As(err, &held) || held.PID != 0 {
		t.Fatalf("got %v, want a HeldError without pid", err)
	}
	if !strings.Contains(err.Error(), "another process") {
		t.Errorf("error %q", err)
	}
}
