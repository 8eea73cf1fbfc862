package unix_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/hallmarkid/hallmark/attestors"
	unixattestor "github.com/hallmarkid/hallmark/attestors/unix"
	"github.com/hallmarkid/hallmark/registration"
)

var _ attestors.WorkloadAttestor = (*unixattestor.Attestor)(nil)

// With helperEnv set the test binary is a workload that waits for its stdin
// to close.
const helperEnv = "UNIX_ATTESTOR_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// worldDir returns a temporary directory any uid can traverse.
func worldDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "unix-attestor-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// copyExecutable copies src to dir/name and returns the new path and the
// hex SHA-256 of its contents.
func copyExecutable(t *testing.T, src, dir, name string) (string, string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, name)
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return dst, hex.EncodeToString(sum[:])
}

func sleepBinary(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatalf("sleep (coreutils) is required: %v", err)
	}
	return p
}

// start runs bin with args and stops it when the test ends.
func start(t *testing.T, cmd *exec.Cmd) *exec.Cmd {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

func attest(t *testing.T, a *unixattestor.Attestor, pid int) []string {
	t.Helper()
	sels, err := a.Attest(context.Background(), int32(pid))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range sels {
		if s.Type != "unix" {
			t.Errorf("selector type %q", s.Type)
		}
		if err := s.Validate(); err != nil {
			t.Errorf("selector %v: %v", s, err)
		}
		out = append(out, s.Value)
	}
	return out
}

// idSelectors returns the selectors expected for the given IDs, names from
// os/user.
func idSelectors(uid, gid uint32, groups []uint32) []string {
	out := []string{"uid:" + fmt.Sprint(uid)}
	if u, err := user.LookupId(fmt.Sprint(uid)); err == nil {
		out = append(out, "user:"+u.Username)
	}
	out = append(out, "gid:"+fmt.Sprint(gid))
	if g, err := user.LookupGroupId(fmt.Sprint(gid)); err == nil {
		out = append(out, "group:"+g.Name)
	}
	for _, sg := range groups {
		out = append(out, "supplementary_gid:"+fmt.Sprint(sg))
		if g, err := user.LookupGroupId(fmt.Sprint(sg)); err == nil {
			out = append(out, "supplementary_group:"+g.Name)
		}
	}
	return out
}

func TestAttestSelf(t *testing.T) {
	a := unixattestor.New(unixattestor.Config{DiscoverWorkloadPath: true, WorkloadSizeLimit: -1})
	if a.Name() != "unix" {
		t.Errorf("Name() = %q", a.Name())
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	groups, err := os.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	var gs []uint32
	for _, g := range groups {
		gs = append(gs, uint32(g))
	}
	want := append(idSelectors(uint32(os.Geteuid()), uint32(os.Getegid()), gs),
		"path:"+self, "sha256:"+hex.EncodeToString(sum[:]))
	got := attest(t, a, os.Getpid())
	if !slices.Equal(got, want) {
		t.Errorf("selectors\n got %q\nwant %q", got, want)
	}
}

func TestAttestOtherUID(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test runs as root: it starts a child as uid 65534")
	}
	dir := worldDir(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, sum := copyExecutable(t, self, dir, "workload.test")
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	if _, err := cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	// 4242 has no name on any test machine we know of: no
	// supplementary_group: for it. (The kernel keeps groups sorted.)
	groups := []uint32{4242, 65534}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: groups}}
	start(t, cmd)

	a := unixattestor.New(unixattestor.Config{DiscoverWorkloadPath: true, WorkloadSizeLimit: -1})
	want := append(idSelectors(65534, 65534, groups), "path:"+bin, "sha256:"+sum)
	got := attest(t, a, cmd.Process.Pid)
	if !slices.Equal(got, want) {
		t.Errorf("selectors\n got %q\nwant %q", got, want)
	}
	for _, s := range got {
		if strings.HasPrefix(s, "supplementary_group:") && strings.Contains(s, "4242") {
			t.Errorf("unexpected %q", s)
		}
	}
}

// exeSelectors returns the path: and sha256: selectors of sels.
func exeSelectors(sels []string) []string {
	var out []string
	for _, s := range sels {
		if strings.HasPrefix(s, "path:") || strings.HasPrefix(s, "sha256:") {
			out = append(out, s)
		}
	}
	return out
}

func TestPathAndHashCache(t *testing.T) {
	dir := t.TempDir()
	binA, sumA := copyExecutable(t, sleepBinary(t), dir, "workload-a")
	binB, sumB := copyExecutable(t, sleepBinary(t), dir, "workload-b")
	a := unixattestor.New(unixattestor.Config{DiscoverWorkloadPath: true, WorkloadSizeLimit: -1})

	p1 := start(t, exec.Command(binA, "1000"))
	p2 := start(t, exec.Command(binA, "1000"))
	p3 := start(t, exec.Command(binB, "1000"))
	wantA := []string{"path:" + binA, "sha256:" + sumA}
	steps := []struct {
		name       string
		pid        int
		want       []string
		wantHashes int64
	}{
		{name: "first attestation hashes", pid: p1.Process.Pid, want: wantA, wantHashes: 1},
		{name: "same process again is cached", pid: p1.Process.Pid, want: wantA, wantHashes: 1},
		{name: "other process of the same file is cached", pid: p2.Process.Pid, want: wantA, wantHashes: 1},
		{name: "another file (same bytes) is hashed", pid: p3.Process.Pid, want: []string{"path:" + binB, "sha256:" + sumB}, wantHashes: 2},
		{name: "still cached", pid: p1.Process.Pid, want: wantA, wantHashes: 2},
	}
	for _, s := range steps {
		got := exeSelectors(attest(t, a, s.pid))
		if !slices.Equal(got, s.want) {
			t.Errorf("%s: got %q, want %q", s.name, got, s.want)
		}
		if h := unixattestor.Hashes(a); h != s.wantHashes {
			t.Errorf("%s: %d hashes, want %d", s.name, h, s.wantHashes)
		}
	}

	// The cache is bounded: with room for one entry, alternating evicts.
	unixattestor.SetHashCacheSize(a, 1)
	before := unixattestor.Hashes(a)
	for _, p := range []*exec.Cmd{p1, p3, p1, p3} {
		attest(t, a, p.Process.Pid)
	}
	if h := unixattestor.Hashes(a) - before; h != 4 {
		t.Errorf("%d hashes with a one-entry cache, want 4", h)
	}
	if n := unixattestor.CachedHashes(a); n != 1 {
		t.Errorf("%d cache entries, want 1", n)
	}
}

func TestDeletedExecutable(t *testing.T) {
	dir := t.TempDir()
	bin, sum := copyExecutable(t, sleepBinary(t), dir, "workload")
	p := start(t, exec.Command(bin, "1000"))
	// Another file now takes the name: the running code is not its.
	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	a := unixattestor.New(unixattestor.Config{DiscoverWorkloadPath: true, WorkloadSizeLimit: -1})
	got := exeSelectors(attest(t, a, p.Process.Pid))
	want := []string{"path:" + bin + " (deleted)", "sha256:" + sum}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestWorkloadSizeLimit(t *testing.T) {
	dir := t.TempDir()
	bin, sum := copyExecutable(t, sleepBinary(t), dir, "workload")
	fi, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	size := fi.Size()
	p := start(t, exec.Command(bin, "1000"))
	path, hash := "path:"+bin, "sha256:"+sum
	tests := []struct {
		name    string
		cfg     unixattestor.Config
		want    []string
		wantLog string
	}{
		{name: "path off", cfg: unixattestor.Config{WorkloadSizeLimit: -1}},
		{name: "limit 0 does not hash", cfg: unixattestor.Config{DiscoverWorkloadPath: true}, want: []string{path}},
		{name: "no limit", cfg: unixattestor.Config{DiscoverWorkloadPath: true, WorkloadSizeLimit: -1}, want: []string{path, hash}},
		{name: "limit = size", cfg: unixattestor.Config{DiscoverWorkloadPath: true, WorkloadSizeLimit: size}, want: []string{path, hash}},
		{
			name:    "limit = size-1",
			cfg:     unixattestor.Config{DiscoverWorkloadPath: true, WorkloadSizeLimit: size - 1},
			want:    []string{path},
			wantLog: "larger than the workload size limit",
		},
		{name: "invalid limit hashes nothing", cfg: unixattestor.Config{DiscoverWorkloadPath: true, WorkloadSizeLimit: -2}, want: []string{path}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			tt.cfg.Log = slog.New(slog.NewTextHandler(&logs, nil))
			a := unixattestor.New(tt.cfg)
			got := exeSelectors(attest(t, a, p.Process.Pid))
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if !strings.Contains(logs.String(), tt.wantLog) {
				t.Errorf("log %q does not mention %q", logs.String(), tt.wantLog)
			}
			if tt.wantLog == "" && logs.Len() != 0 {
				t.Errorf("unexpected log %q", logs.String())
			}
		})
	}
	if err := (unixattestor.Config{WorkloadSizeLimit: -2}).Validate(); err == nil || !strings.Contains(err.Error(), "unix: workload size limit -2") {
		t.Errorf("Validate(-2) = %v", err)
	}
	for _, l := range []int64{-1, 0, 1 << 20} {
		if err := (unixattestor.Config{WorkloadSizeLimit: l}).Validate(); err != nil {
			t.Errorf("Validate(%d) = %v", l, err)
		}
	}
}

// fakeProc returns a proc directory holding 100/status with the given
// contents.
func fakeProc(t *testing.T, status string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "100"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "100", "status"), []byte(status), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestAttestFixture(t *testing.T) {
	a := unixattestor.New(unixattestor.Config{ProcDir: fakeProc(t, readFixture(t, "status-mixed-ids.txt"))})
	got := attest(t, a, 100)
	want := idSelectors(2000, 2002, []uint32{5, 6})
	if !slices.Equal(got, want) {
		t.Errorf("selectors\n got %q\nwant %q", got, want)
	}
}

func TestAttestDuplicateGroups(t *testing.T) {
	status := "Name:\tx\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t7 7 8 7 \n"
	a := unixattestor.New(unixattestor.Config{ProcDir: fakeProc(t, status)})
	var n7 int
	for _, s := range attest(t, a, 100) {
		if s == "supplementary_gid:7" {
			n7++
		}
	}
	if n7 != 1 {
		t.Errorf("supplementary_gid:7 appears %d times", n7)
	}
}

func TestAttestErrors(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	good := readFixture(t, "status-nogroups.txt")
	tests := []struct {
		name    string
		cfg     unixattestor.Config
		ctx     context.Context
		pid     int32
		wantErr string
	}{
		{name: "pid 0", pid: 0, wantErr: "unix: attest: invalid pid 0"},
		{name: "negative pid", pid: -5, wantErr: "invalid pid -5"},
		// Above the kernel's PID_MAX_LIMIT (2^22): never a process.
		{name: "no such process", pid: 1 << 30, wantErr: "unix: attest pid 1073741824: no such process"},
		{name: "canceled", ctx: canceled, pid: int32(os.Getpid()), wantErr: "context canceled"},
		{name: "garbage status", cfg: unixattestor.Config{ProcDir: fakeProc(t, "\x7fELF\x02\x01\x01")}, pid: 100, wantErr: "no final newline"},
		{name: "truncated status", cfg: unixattestor.Config{ProcDir: fakeProc(t, good[:strings.Index(good, "Uid:")])}, pid: 100, wantErr: "truncated"},
		{name: "status cut mid-line", cfg: unixattestor.Config{ProcDir: fakeProc(t, good[:strings.Index(good, "Uid:")+2])}, pid: 100, wantErr: "no final newline"},
		{name: "no executable", cfg: unixattestor.Config{ProcDir: fakeProc(t, good), DiscoverWorkloadPath: true}, pid: 100, wantErr: "open executable"},
		{name: "huge status", cfg: unixattestor.Config{ProcDir: fakeProc(t, strings.Repeat("A:\n", 400000))}, pid: 100, wantErr: "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			sels, err := unixattestor.New(tt.cfg).Attest(ctx, tt.pid)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %v, want %q", err, tt.wantErr)
			}
			if sels != nil {
				t.Errorf("selectors %v with an error", sels)
			}
		})
	}
}

func TestExitedProcess(t *testing.T) {
	cmd := exec.Command(sleepBinary(t), "0")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	exists := func() bool { _, err := os.Stat("/proc/" + strconv.Itoa(pid)); return err == nil }
	if exists() {
		t.Logf("pid %d was reused at once; nothing to check", pid)
		return
	}
	_, err := unixattestor.New(unixattestor.Config{}).Attest(context.Background(), int32(pid))
	if exists() {
		t.Logf("pid %d was reused during the test; nothing to check", pid)
		return
	}
	if err == nil || !strings.Contains(err.Error(), "no such process") {
		t.Errorf("error = %v, want no such process", err)
	}
}

func BenchmarkAttest(b *testing.B) {
	for _, bc := range []struct {
		name string
		cfg  unixattestor.Config
	}{
		{name: "ids", cfg: unixattestor.Config{}},
		{name: "ids+path+sha256-cached", cfg: unixattestor.Config{DiscoverWorkloadPath: true, WorkloadSizeLimit: -1}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			a := unixattestor.New(bc.cfg)
			ctx, pid := context.Background(), int32(os.Getpid())
			var sels []registration.Selector
			var err error
			for b.Loop() {
				if sels, err = a.Attest(ctx, pid); err != nil {
					b.Fatal(err)
				}
			}
			if unixattestor.Hashes(a) > 1 {
				b.Fatalf("%d hashes", unixattestor.Hashes(a))
			}
			_ = sels
		})
	}
}

func TestAttestConcurrent(t *testing.T) {
	dir := t.TempDir()
	bin, sum := copyExecutable(t, sleepBinary(t), dir, "workload")
	p := start(t, exec.Command(bin, "1000"))
	a := unixattestor.New(unixattestor.Config{DiscoverWorkloadPath: true, WorkloadSizeLimit: -1})
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			for range 50 {
				sels, err := a.Attest(context.Background(), int32(p.Process.Pid))
				if err == nil && sels[len(sels)-1].Value != "sha256:"+sum {
					err = fmt.Errorf("last selector %v", sels[len(sels)-1])
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if n := unixattestor.CachedHashes(a); n != 1 {
		t.Errorf("%d cache entries, want 1", n)
	}
}
