package peercred_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/hallmarkid/hallmark/agent/peercred"
)

// obey connects to sock and runs one command per stdin line, answering
// "done" (or, for exec, the new program's "ready"):
//
//	exec PATH        exec PATH in "wait" mode
//	setresgid R E S  (-1 keeps one)
//	setresuid R E S
//	setgroups G,G    supplementary groups
//	exit
func obey(sock string) error {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Println("connected")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		ids := make([]int, 0, 3)
		for _, a := range f[1:] {
			for _, v := range strings.Split(a, ",") {
				if n, err := strconv.Atoi(v); err == nil {
					ids = append(ids, n)
				}
			}
		}
		switch f[0] {
		case "exec":
			var env []string
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, helperEnv+"=") {
					env = append(env, kv)
				}
			}
			return syscall.Exec(f[1], []string{f[1], "-test.run=^$", "x"}, append(env, helperEnv+"=wait"))
		case "setresgid":
			err = syscall.Setresgid(ids[0], ids[1], ids[2])
		case "setresuid":
			err = syscall.Setresuid(ids[0], ids[1], ids[2])
		case "setgroups":
			err = syscall.Setgroups(ids)
		case "exit":
			return nil
		default:
			err = fmt.Errorf("unknown command %q", f[0])
		}
		if err != nil {
			return err
		}
		fmt.Println("done")
	}
	return in.Err()
}

// obeyer is a child in obey mode and the server end of its connection.
type obeyer struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	lis    net.Listener
}

func startObeyer(t *testing.T) *obeyer {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "s.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$", sock)
	cmd.Env = append(os.Environ(), helperEnv+"=obey")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
	o := &obeyer{t: t, cmd: cmd, stdin: stdin, stdout: bufio.NewReader(stdout), lis: lis}
	o.expect("connected")
	return o
}

func (o *obeyer) expect(want string) {
	o.t.Helper()
	line, err := o.stdout.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != want {
		o.t.Fatalf("child said %q (%v), want %q", line, err, want)
	}
}

// do runs a command in the child and waits for its answer.
func (o *obeyer) do(cmd string) {
	o.t.Helper()
	if _, err := fmt.Fprintln(o.stdin, cmd); err != nil {
		o.t.Fatal(err)
	}
	switch {
	case strings.HasPrefix(cmd, "exec "):
		o.expect("ready")
	case cmd == "exit":
		o.cmd.Wait()
	default:
		o.expect("done")
	}
}

// accept runs the server handshake on the child's connection.
func (o *obeyer) accept() peercred.AuthInfo {
	o.t.Helper()
	c, err := o.lis.Accept()
	if err != nil {
		o.t.Fatal(err)
	}
	conn, ai, err := peercred.TransportCredentials().ServerHandshake(c)
	if err != nil {
		o.t.Fatal(err)
	}
	o.t.Cleanup(func() { conn.Close() })
	return ai.(peercred.AuthInfo)
}

// A process keeps its PID and pidfd across exec, setuid and setgid: Verify
// must notice each.
func TestVerifyNoticesChanges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test runs as root: its child changes uid and gid")
	}
	other := copyTestBinary(t, t.TempDir())
	tests := []struct {
		name    string
		cmds    []string
		wantErr string
	}{
		{name: "exec of another program", cmds: []string{"exec " + other}, wantErr: "(exec)"},
		{name: "setgid", cmds: []string{"setresgid 4242 4242 4242"}, wantErr: "effective gid 0 → 4242"},
		{name: "setegid only", cmds: []string{"setresgid -1 4242 -1"}, wantErr: "effective gid 0 → 4242, filesystem gid 0 → 4242"},
		{name: "saved gid only", cmds: []string{"setresgid -1 -1 4242"}, wantErr: "saved gid 0 → 4242"},
		{name: "setuid", cmds: []string{"setresuid 65534 65534 65534"}, wantErr: "real uid 0 → 65534, effective uid 0 → 65534"},
		{name: "seteuid only", cmds: []string{"setresuid -1 65534 -1"}, wantErr: "effective uid 0 → 65534"},
		{name: "setgroups", cmds: []string{"setgroups 5,6"}, wantErr: "supplementary groups [] → [5 6]"},
		{name: "gain gid then exec", cmds: []string{"setresgid 4242 4242 4242", "exec " + other}, wantErr: "effective gid 0 → 4242"},
		{name: "exit", cmds: []string{"exit"}, wantErr: "process exited"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := startObeyer(t)
			info := o.accept()
			if err := info.Verify(); err != nil {
				t.Fatalf("Verify() before any change = %v", err)
			}
			for _, c := range tt.cmds {
				o.do(c)
			}
			err := info.Verify()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Verify() = %v, want %q", err, tt.wantErr)
			}
			if tt.name != "exit" && !errors.Is(err, peercred.ErrChanged) {
				t.Errorf("Verify() = %v, does not wrap ErrChanged", err)
			}
			if !strings.HasPrefix(err.Error(), fmt.Sprintf("peercred: caller pid %d", o.cmd.Process.Pid)) {
				t.Errorf("Verify() = %q, want it to name the pid", err)
			}
		})
	}
}

// A process that changes credentials after connect() but before the agent
// accepts the connection: SO_PEERCRED says what it was at connect().
func TestVerifyChangeBeforeHandshake(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test runs as root: its child changes gid")
	}
	o := startObeyer(t)
	o.do("setresgid 4242 4242 4242")
	info := o.accept()
	if info.GID != 0 {
		t.Errorf("AuthInfo.GID = %d, want 0 (at connect)", info.GID)
	}
	err := info.Verify()
	if err == nil || !strings.Contains(err.Error(), "effective uid/gid 0/0 at connect(), 0/4242 when the agent accepted") {
		t.Fatalf("Verify() = %v, want the change between connect and accept", err)
	}
}

func TestVerifyGroups(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test runs as root: its child sets groups")
	}
	o := startObeyer(t)
	o.do("setgroups 7,3,9")
	info := o.accept()
	if fmt.Sprint(info.Groups) != "[3 7 9]" {
		t.Errorf("AuthInfo.Groups = %v, want [3 7 9]", info.Groups)
	}
	if err := info.Verify(); err != nil {
		t.Fatalf("Verify() = %v", err)
	}
}

func TestVerifyAfterClose(t *testing.T) {
	a, b, err := socketpair()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	conn, ai, err := peercred.TransportCredentials().ServerHandshake(a)
	if err != nil {
		t.Fatal(err)
	}
	info := ai.(peercred.AuthInfo)
	if err := info.Verify(); err != nil {
		t.Fatalf("Verify() = %v", err)
	}
	conn.Close()
	if err := info.Verify(); err == nil || !strings.Contains(err.Error(), "connection closed") {
		t.Errorf("Verify() after close = %v, want connection closed", err)
	}
	if err := (peercred.AuthInfo{}).Verify(); err == nil || !strings.Contains(err.Error(), "does not come from a handshake") {
		t.Errorf("zero AuthInfo Verify() = %v", err)
	}
}

// BenchmarkVerify is the per-call cost of the caller re-check: one read of
// /proc/<pid>/status, one stat of /proc/<pid>/exe, one poll of the pidfd.
func BenchmarkVerify(b *testing.B) {
	a, c, err := socketpair()
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	conn, ai, err := peercred.TransportCredentials().ServerHandshake(a)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	info := ai.(peercred.AuthInfo)
	b.ReportAllocs()
	// CPU time as well as wall time: on a shared machine the latter
	// includes waiting for a core.
	var r0, r1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
	for b.Loop() {
		if err := info.Verify(); err != nil {
			b.Fatal(err)
		}
	}
	syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
	cpu := (r1.Utime.Nano() + r1.Stime.Nano()) - (r0.Utime.Nano() + r0.Stime.Nano())
	b.ReportMetric(float64(cpu)/float64(b.N)/1000, "cpu-us/op")
}
