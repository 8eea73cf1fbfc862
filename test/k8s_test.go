package test

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hallmarkid/hallmark/attestors/k8s/k8stest"
	"github.com/hallmarkid/hallmark/test/testenv"
)

// A process in a real kubelet-shaped cgroup gets the SVID registered for
// its pod's namespace and service account, through the agent's k8s
// workload attestor and a loopback HTTPS kubelet; the stock go-spiffe
// client runs inside that process.
func TestKubernetesPodGetsNamespaceServiceAccountSVID(t *testing.T) {
	for _, v2 := range []bool{false, true} {
		name := "cgroup-v1-cgroupfs"
		if v2 {
			name = "cgroup-v2-systemd"
		}
		t.Run(name, func(t *testing.T) {
			if err := k8stest.CanUseCgroups(v2); err != nil {
				t.Fatal(err) // root is required here, in CI too
			}
			const podUID = "2c48913c-b29f-11e7-9350-020968147796"
			cid := strings.Repeat("ab12", 16)
			url, caPEM, token := k8stest.NewKubelet(t, k8stest.Pod("payments", "api-7d9f", "api-sa", podUID, "api", cid))

			env := testenv.New(t)
			caPath := filepath.Join(env.Dir, "kubelet-ca.pem")
			tokPath := filepath.Join(env.Dir, "token")
			must(t, os.WriteFile(caPath, caPEM, 0o600))
			must(t, os.WriteFile(tokPath, []byte(token), 0o600))

			srv := env.StartServer()
			ag := env.StartAgent(srv, srv.Token(), testenv.WithAgentTopHCL(`
workload_attestor "unix" {}
workload_attestor "k8s" {
  kubelet_url     = "`+url+`"
  kubelet_ca_path = "`+caPath+`"
  token_path      = "`+tokPath+`"
  cgroup_root     = "`+k8stest.CgroupRoot()+`"
}`))
			const want = "spiffe://example.org/ns/payments/sa/api-sa"
			srv.CreateEntry(want, ag.ID(), "-selector", "k8s:ns:payments", "-selector", "k8s:sa:api-sa")
			// Same uid, not in the pod: this entry must not reach the pod,
			// nor the pod's entry this test process.
			srv.CreateEntry("spiffe://example.org/host-process", ag.ID(), "-selector", uidSelector(), "-selector", "unix:gid:999999")

			child := exec.Command(os.Args[0])
			child.Env = append(os.Environ(), "HALLMARK_TEST_CHILD=fetch", "HALLMARK_TEST_ADDR="+ag.Addr())
			stdin, err := child.StdinPipe()
			must(t, err)
			var out, errOut bytes.Buffer
			child.Stdout, child.Stderr = &out, &errOut
			must(t, child.Start())
			k8stest.MoveToPodCgroup(t, child.Process.Pid, podUID, cid, v2)
			_, _ = io.WriteString(stdin, "go\n")
			if err := child.Wait(); err != nil {
				t.Fatalf("child: %v\nstderr: %s\nagent log:\n%s", err, errOut.String(), ag.Log())
			}
			if got := strings.TrimSpace(out.String()); got != want {
				t.Fatalf("pod process got %q, want %q", got, want)
			}

			// This test process is not in the pod: no k8s selectors, no pod SVID.
			if c, err := fetchErr(ag.Addr()); err == nil {
				for _, s := range c.SVIDs {
					if s.ID.String() == want {
						t.Fatal("a process outside the pod received the pod's SVID")
					}
				}
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
