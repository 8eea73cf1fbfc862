package k8s_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/attestors/k8s"
	"github.com/hallmarkid/hallmark/attestors/k8s/k8stest"
)

// needCgroups fails under CI and skips elsewhere when real cgroups cannot
// be used (not root).
func needCgroups(t *testing.T, v2 bool) {
	t.Helper()
	if err := k8stest.CanUseCgroups(v2); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

// startChild starts a process that lives until the test ends.
func startChild(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd.Process.Pid
}

func realAttestor(t *testing.T, k *k8stest.Kubelet) *k8s.Attestor {
	return newAttestor(t, k, "/proc", func(c *k8s.Config) { c.CgroupRoot = k8stest.CgroupRoot() })
}

func TestAttestRealCgroups(t *testing.T) {
	for _, v2 := range []bool{false, true} {
		name := "v1 cgroupfs"
		if v2 {
			name = "v2 systemd"
		}
		t.Run(name, func(t *testing.T) {
			needCgroups(t, v2)
			podUID, cid := "6f1c3a52-0b7e-4d1a-9c55-000000000001", hex64
			if v2 {
				podUID, cid = "6f1c3a52-0b7e-4d1a-9c55-000000000002", otherHex
			}
			k := k8stest.StartKubelet(t, k8stest.Pod("prod", "web-"+name[:2], "web", podUID, "app", cid))
			a := realAttestor(t, k)

			cmd := exec.Command("sleep", "30")
			pid := startChild(t, cmd)

			// Before the move: not in a pod.
			got, err := a.Attest(context.Background(), int32(pid))
			if err != nil || len(got) != 0 {
				t.Fatalf("before move: Attest = %v, %v", got, err)
			}

			cleanup := k8stest.MoveToPodCgroup(t, pid, podUID, cid, v2)
			cg, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
			got, err = a.Attest(context.Background(), int32(pid))
			if err != nil {
				t.Fatalf("Attest: %v\n/proc/%d/cgroup:\n%s", err, pid, cg)
			}
			vs := values(got)
			for _, w := range []string{"k8s:ns:prod", "k8s:sa:web", "k8s:pod-uid:" + podUID, "k8s:container-name:app"} {
				if !slices.Contains(vs, w) {
					t.Errorf("missing %q in %v", w, vs)
				}
			}

			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			cleanup()
			mount := k8stest.V1Mount
			if v2 {
				mount = k8stest.V2Mount
			}
			if _, err := os.Stat(filepath.Join(mount, k8stest.CgroupRoot())); !os.IsNotExist(err) {
				t.Errorf("cgroups left behind: %v", err)
			}
		})
	}
}

// A process in pod A shapes its own mount namespace so that its mountinfo
// names pod B's container; it must still get pod A's identity, and a
// process in no pod must get none.
func TestAttestRealForgedMountinfo(t *testing.T) {
	needCgroups(t, false)
	const podA, podB = "aaaaaaaa-0000-4000-8000-000000000001", "bbbbbbbb-0000-4000-8000-000000000002"
	cidA, cidB := hex64, otherHex
	k := k8stest.StartKubelet(t,
		k8stest.Pod("tenant", "a", "tenant-sa", podA, "app", cidA),
		k8stest.Pod("prod", "b", "payments-sa", podB, "app", cidB))
	a := realAttestor(t, k)

	forger := func() (*exec.Cmd, int) {
		dir := t.TempDir()
		script := `set -e
mount -t tmpfs none "$D"
mkdir -p "$D/kubepods/burstable/pod$U/$C"
mount --bind "$D/kubepods/burstable/pod$U/$C" "$M"
exec sleep 30`
		cmd := exec.Command("sh", "-c", script)
		cmd.Env = append(os.Environ(), "D="+filepath.Join(dir, "fs"), "M="+filepath.Join(dir, "mnt"), "U="+podB, "C="+cidB)
		_ = os.Mkdir(filepath.Join(dir, "fs"), 0o755)
		_ = os.Mkdir(filepath.Join(dir, "mnt"), 0o755)
		cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
		pid := startChild(t, cmd)
		// Wait until the forgery is in place.
		deadline := time.Now().Add(5 * time.Second)
		for {
			mi, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/mountinfo")
			if strings.Contains(string(mi), "/kubepods/burstable/pod"+podB+"/"+cidB) {
				return cmd, pid
			}
			if time.Now().After(deadline) {
				t.Fatalf("forged mountinfo never appeared:\n%s", mi)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	t.Run("not in a pod", func(t *testing.T) {
		_, pid := forger()
		got, err := a.Attest(context.Background(), int32(pid))
		if err != nil || len(got) != 0 {
			t.Fatalf("Attest = %v, %v; want nothing", got, err)
		}
	})
	t.Run("in pod A", func(t *testing.T) {
		_, pid := forger()
		k8stest.MoveToPodCgroup(t, pid, podA, cidA, false)
		got, err := a.Attest(context.Background(), int32(pid))
		if err != nil {
			t.Fatal(err)
		}
		vs := values(got)
		if !slices.Contains(vs, "k8s:pod-uid:"+podA) || slices.Contains(vs, "k8s:sa:payments-sa") {
			t.Fatalf("selectors %v: want pod A's only", vs)
		}
	})
}

// A cgroup shaped like a pod's but outside kubelet's hierarchy (as in a
// systemd user delegation) is refused.
func TestAttestRealUnanchoredCgroup(t *testing.T) {
	needCgroups(t, true)
	k := k8stest.StartKubelet(t, k8stest.Pod("prod", "b", "payments-sa", uid, "app", hex64))
	// Not configured with the helper's cgroup root, so its pod cgroups
	// look like a forgery below some delegated directory.
	a := newAttestor(t, k, "/proc", nil)
	cmd := exec.Command("sleep", "30")
	pid := startChild(t, cmd)
	k8stest.MoveToPodCgroup(t, pid, uid, hex64, true)
	got, err := a.Attest(context.Background(), int32(pid))
	if err == nil || !strings.Contains(err.Error(), "not under kubelet's hierarchy") {
		t.Fatalf("Attest = %v, %v", got, err)
	}
	if k.Requests() != 0 {
		t.Fatal("kubelet was asked about an unanchored cgroup")
	}
}
