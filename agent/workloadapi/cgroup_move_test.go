package workloadapi_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/hallmarkid/hallmark/agent/workloadattest"
	"github.com/hallmarkid/hallmark/attestors/k8s"
	"github.com/hallmarkid/hallmark/attestors/k8s/k8stest"
	"github.com/hallmarkid/hallmark/attestors/unix"
	"github.com/hallmarkid/hallmark/registration"
)

// fetcherEnv, when set to a Workload API address, makes the test binary a
// workload that answers each line on stdin with one FetchX509SVIDs call on
// one connection: "ok <ids>" or "err <message>".
const fetcherEnv = "HALLMARK_TEST_WORKLOAD_FETCHER"

func fetcher(addr string, in io.Reader, out io.Writer) int {
	ctx := context.Background()
	client, err := workloadapi.New(ctx, workloadapi.WithAddr(addr))
	if err != nil {
		fmt.Fprintln(out, "err", err)
		return 1
	}
	defer client.Close()
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		svids, err := client.FetchX509SVIDs(cctx)
		cancel()
		if err != nil {
			fmt.Fprintln(out, "err", strings.ReplaceAll(err.Error(), "\n", " "))
			continue
		}
		var ids []string
		for _, s := range svids {
			ids = append(ids, s.ID.String())
		}
		sort.Strings(ids)
		fmt.Fprintln(out, "ok", strings.Join(ids, ","))
	}
	return 0
}

// childWorkload is a child process holding one Workload API connection.
type childWorkload struct {
	t     *testing.T
	pid   int
	in    io.Writer
	lines *bufio.Scanner
}

func startWorkload(t *testing.T, addr string) *childWorkload {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fetcherEnv+"="+addr)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return &childWorkload{t: t, pid: cmd.Process.Pid, in: in, lines: bufio.NewScanner(out)}
}

// fetch makes one call on the workload's connection and returns its answer.
func (w *childWorkload) fetch() string {
	w.t.Helper()
	fmt.Fprintln(w.in, "fetch")
	if !w.lines.Scan() {
		w.t.Fatalf("workload: %v", w.lines.Err())
	}
	return w.lines.Text()
}

// A process can be moved to another cgroup without an exec or a change of
// credentials, so its pod (k8s selectors) changes while its connection,
// PID, executable and credentials stay the same: a reused attestation must
// not outlive the move. A workload in pod A's container, moved into pod
// B's, gets B's SVID and no longer A's on its very next call on the same
// connection; moved out of every pod, it gets nothing. The pod list cache
// TTL (and so the attestation reuse bound) is a minute: only the cgroup
// fingerprint can explain the new answers.
func TestCallerMovedToAnotherCgroup(t *testing.T) {
	for _, v2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "cgroup v1", true: "cgroup v2"}[v2], func(t *testing.T) {
			if err := k8stest.CanUseCgroups(v2); err != nil {
				if os.Getenv("CI") != "" {
					t.Fatal(err)
				}
				t.Skip(err)
			}
			const podA, podB = "aaaaaaaa-1111-4000-8000-00000000000a", "bbbbbbbb-1111-4000-8000-00000000000b"
			cidA, cidB := strings.Repeat("a1", 32), strings.Repeat("b2", 32)
			kubelet := k8stest.StartKubelet(t,
				k8stest.Pod("prod", "a", "sa-a", podA, "app", cidA),
				k8stest.Pod("prod", "b", "sa-b", podB, "app", cidB))
			ka := newK8sAttestor(t, kubelet)
			wa := workloadattest.New(nil, unix.New(unix.Config{}), ka)
			f := newFixtureAttestor(t, nil, wa)
			f.add(t, "pod-a", 1, time.Hour, registration.Selector{Type: "k8s", Value: "pod-uid:" + podA})
			f.add(t, "pod-b", 1, time.Hour, registration.Selector{Type: "k8s", Value: "pod-uid:" + podB})

			w := startWorkload(t, f.addr)
			k8stest.MoveToPodCgroup(t, w.pid, podA, cidA, v2)
			for range 3 {
				if got := w.fetch(); got != "ok spiffe://example.org/pod-a" {
					t.Fatalf("in pod A: %s", got)
				}
			}
			if n := wa.Attestations(); n != 1 {
				t.Fatalf("%d attestations for 3 calls in pod A on one connection, want 1 (reused)", n)
			}

			leaveB := k8stest.MoveToPodCgroup(t, w.pid, podB, cidB, v2)
			if got := w.fetch(); got != "ok spiffe://example.org/pod-b" {
				t.Fatalf("moved to pod B: %s, want pod B's SVID only", got)
			}

			leaveB() // back to the hierarchy's root: in no pod
			if got := w.fetch(); !strings.HasPrefix(got, "err ") || !strings.Contains(got, "PermissionDenied") {
				t.Fatalf("moved out of every pod: %s, want PermissionDenied", got)
			}
		})
	}
}

func newK8sAttestor(t *testing.T, k *k8stest.Kubelet) *k8s.Attestor {
	t.Helper()
	dir := t.TempDir()
	ca, tok := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "token")
	if err := os.WriteFile(ca, k.CAPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tok, []byte(k.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := k8s.New(k8s.Config{KubeletURL: k.URL, KubeletCAPath: ca, TokenPath: tok, ProcDir: "/proc",
		CgroupRoot: k8stest.CgroupRoot(), PodListCacheTTL: "1m", MaxPollAttempts: 2, PollRetryInterval: "10ms"})
	if err != nil {
		t.Fatal(err)
	}
	return a
}
