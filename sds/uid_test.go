package sds_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/hallmarkid/hallmark/sds"
)

// The test binary doubles as a second caller: with helperEnv set it runs
// helperMain (as another uid) instead of the tests.
const helperEnv = "SDS_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		if err := helperMain(os.Args[len(os.Args)-2], strings.Split(os.Args[len(os.Args)-1], ",")); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// helperMain asks sock for each name, over StreamSecrets, and prints one
// line per name: "name ok <what>" or "name err <code>".
func helperMain(sock string, names []string) error {
	cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	c := secretv3.NewSecretDiscoveryServiceClient(cc)
	for _, name := range names {
		ctx, cancel := context.WithTimeout(headerCtx(context.Background()), 10*time.Second)
		s, err := c.StreamSecrets(ctx)
		if err == nil {
			err = s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: sds.SecretTypeURL, ResourceNames: []string{name}})
		}
		var resp *discoveryv3.DiscoveryResponse
		if err == nil {
			resp, err = s.Recv()
		}
		cancel()
		if err != nil {
			fmt.Printf("%s err %s\n", name, status.Code(err))
			continue
		}
		fmt.Printf("%s ok %s\n", name, describeResp(resp))
	}
	return nil
}

// describeResp summarises a response without a testing.T: the SPIFFE ID
// of each certificate or "bundle".
func describeResp(r *discoveryv3.DiscoveryResponse) string {
	var out []string
	for _, a := range r.Resources {
		s := decode(nopTB{}, a.GetTypeUrl(), a.GetValue())
		if tc := s.GetTlsCertificate(); tc != nil {
			out = append(out, idOf(nopTB{}, s))
		} else {
			out = append(out, "bundle")
		}
	}
	return strings.Join(out, ",")
}

// nopTB lets test helpers run in the child; a failure panics.
type nopTB struct{ testing.TB }

func (nopTB) Helper()                   {}
func (nopTB) Fatal(args ...any)         { panic(fmt.Sprint(args...)) }
func (nopTB) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }

// copyTestBinary copies the test binary where an unprivileged child can
// execute it (go test's build directory is private to root).
func copyTestBinary(t *testing.T, dir string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "helper.test")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

func TestCallersWithDifferentUIDs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test runs as root: it starts a child as uid 65534")
	}
	e, dir, _ := fileEnv(t)
	mine := mkEntry("mine", "/root-workload", 1, uidSelector(0))
	theirs := mkEntry("theirs", "/nobody-workload", 1, uidSelector(65534))
	e.addEntries(mine, theirs)

	publicRoot := "file-root:" + filepath.Join(dir, "root-cert.pem")
	privateRoot := "file-root:" + filepath.Join(dir, "private-root.pem") // 0600 root
	names := []string{"default", "ROOTCA", mine.SPIFFEID.String(), theirs.SPIFFEID.String(), publicRoot, privateRoot}

	cmd := exec.Command(copyTestBinary(t, e.dir), "-test.run=^$", e.sock, strings.Join(names, ","))
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		name, rest, _ := strings.Cut(line, " ")
		got[name] = rest
	}
	childWant := map[string]string{
		"default":                "ok " + theirs.SPIFFEID.String(),
		"ROOTCA":                 "ok bundle",
		mine.SPIFFEID.String():   "err PermissionDenied",
		theirs.SPIFFEID.String(): "ok " + theirs.SPIFFEID.String(),
		publicRoot:               "ok bundle",
		privateRoot:              "err PermissionDenied",
	}
	for name, want := range childWant {
		if got[name] != want {
			t.Errorf("uid 65534 asking %q: %q, want %q", name, got[name], want)
		}
	}

	// This process (uid 0) gets its own and never the child's.
	parentWant := map[string]string{
		"default":                "ok " + mine.SPIFFEID.String(),
		mine.SPIFFEID.String():   "ok " + mine.SPIFFEID.String(),
		theirs.SPIFFEID.String(): "err PermissionDenied",
		privateRoot:              "ok bundle",
	}
	for name, want := range parentWant {
		resp, err := e.client().FetchSecrets(ctxT(t), &discoveryv3.DiscoveryRequest{ResourceNames: []string{name}})
		g := ""
		if err != nil {
			g = "err " + status.Code(err).String()
		} else {
			g = "ok " + describeResp(resp)
		}
		if g != want {
			t.Errorf("uid 0 asking %q: %q, want %q", name, g, want)
		}
	}
}
