package sds_test

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hallmarkid/hallmark/agent/cache"
	"github.com/hallmarkid/hallmark/sds"
)

func writeFile(t testing.TB, path string, b []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, b, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func svidPEM(t testing.TB, s *cache.SVID) (cert, key []byte) {
	t.Helper()
	chain, err := s.Chain()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chain {
		cert = append(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: s.KeyDER})
}

func caPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// fileEnv is an env with file_dir holding Istio-style files.
func fileEnv(t testing.TB, opts ...envOpt) (*env, string, *cache.SVID) {
	t.Helper()
	fileDir := filepath.Join(worldDir(t), "certs")
	if err := os.Mkdir(fileDir, 0o755); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, append([]envOpt{func(c *sds.Config) { c.FileDir = fileDir }}, opts...)...)
	fileSVID := e.mint(mkEntry("f", "/file-workload", 1), time.Hour)
	cert, key := svidPEM(t, fileSVID)
	writeFile(t, filepath.Join(fileDir, "cert-chain.pem"), cert, 0o644)
	writeFile(t, filepath.Join(fileDir, "key.pem"), key, 0o644)
	writeFile(t, filepath.Join(fileDir, "root-cert.pem"), caPEM(e.ca.Certificate()), 0o644)
	writeFile(t, filepath.Join(fileDir, "private-root.pem"), caPEM(e.ca.Certificate()), 0o600)
	writeFile(t, filepath.Join(fileDir, "junk.pem"), []byte("not pem"), 0o644)
	writeFile(t, filepath.Join(fileDir, "leaf-as-root.pem"), cert, 0o644)
	writeFile(t, filepath.Join(fileDir, "big.pem"), make([]byte, 1<<20+1), 0o644)
	other := e.mint(mkEntry("g", "/other", 1), time.Hour)
	_, otherKey := svidPEM(t, other)
	writeFile(t, filepath.Join(fileDir, "other-key.pem"), otherKey, 0o644)
	if err := os.Symlink("/etc/passwd", filepath.Join(fileDir, "escape.pem")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("root-cert.pem", filepath.Join(fileDir, "inner-link.pem")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(fileDir, "fifo.pem"), 0o644); err != nil {
		t.Fatal(err)
	}
	return e, fileDir, fileSVID
}

func TestIstioFileNames(t *testing.T) {
	e, dir, fileSVID := fileEnv(t)
	p := func(name string) string { return filepath.Join(dir, name) }
	tests := []struct {
		name     string
		resource string
		wantCode codes.Code
		wantErr  string
	}{
		{name: "file-root", resource: "file-root:" + p("root-cert.pem")},
		{name: "file-root through a symlink inside the dir", resource: "file-root:" + p("inner-link.pem")},
		{name: "file-cert", resource: "file-cert:" + p("cert-chain.pem") + "~" + p("key.pem")},
		{name: "outside file_dir", resource: "file-root:/etc/ssl/certs/ca-certificates.crt", wantCode: codes.PermissionDenied, wantErr: "outside file_dir"},
		{name: "dot-dot traversal", resource: "file-root:" + dir + "/../../etc/passwd", wantCode: codes.PermissionDenied, wantErr: "outside file_dir"},
		{name: "symlink escaping the dir", resource: "file-root:" + p("escape.pem"), wantCode: codes.PermissionDenied, wantErr: "leads outside file_dir"},
		{name: "the dir itself", resource: "file-root:" + dir, wantCode: codes.PermissionDenied, wantErr: "outside file_dir"},
		{name: "relative path", resource: "file-root:certs/root-cert.pem", wantCode: codes.InvalidArgument, wantErr: "absolute path"},
		{name: "missing", resource: "file-root:" + p("nope.pem"), wantCode: codes.NotFound, wantErr: "does not exist"},
		{name: "not PEM", resource: "file-root:" + p("junk.pem"), wantCode: codes.InvalidArgument, wantErr: "no PEM certificate"},
		{name: "leaf as root", resource: "file-root:" + p("leaf-as-root.pem"), wantCode: codes.InvalidArgument, wantErr: "not a CA"},
		{name: "too big", resource: "file-root:" + p("big.pem"), wantCode: codes.InvalidArgument, wantErr: "larger than"},
		{name: "fifo", resource: "file-root:" + p("fifo.pem"), wantCode: codes.InvalidArgument, wantErr: "not a regular file"},
		{name: "key of another cert", resource: "file-cert:" + p("cert-chain.pem") + "~" + p("other-key.pem"), wantCode: codes.InvalidArgument, wantErr: "key pair"},
		{name: "key file without a key", resource: "file-cert:" + p("cert-chain.pem") + "~" + p("root-cert.pem"), wantCode: codes.InvalidArgument, wantErr: "no PEM private key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := e.client().FetchSecrets(ctxT(t), &discoveryv3.DiscoveryRequest{ResourceNames: []string{tt.resource}})
			if tt.wantErr != "" {
				if status.Code(err) != tt.wantCode || !errContains(err, tt.wantErr) {
					t.Fatalf("err = %v, want %s containing %q", err, tt.wantCode, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			validateResponse(t, resp)
			s := secrets(t, resp)[tt.resource]
			if s == nil {
				t.Fatalf("no secret named %q", tt.resource)
			}
			if strings.HasPrefix(tt.resource, "file-cert:") {
				if leaf := certOf(t, s); !leaf.Equal(leafOf(t, fileSVID)) {
					t.Fatalf("file-cert leaf %s", leaf.URIs)
				}
				return
			}
			// file-root is always trusted_ca: the file has no trust domain.
			if roots, spiffe := rootsOf(t, s); spiffe || !roots[""][0].Equal(e.ca.Certificate()) {
				t.Fatalf("file-root: spiffe %v roots %v", spiffe, roots)
			}
		})
	}
}

func TestIstioFileChangesPushed(t *testing.T) {
	e, dir, _ := fileEnv(t, func(c *sds.Config) { c.FilePollInterval = 20 * time.Millisecond })
	name := "file-cert:" + filepath.Join(dir, "cert-chain.pem") + "~" + filepath.Join(dir, "key.pem")
	s := e.openStream(true)
	s.send(&discoveryv3.DiscoveryRequest{Node: envoyNode(1, 30), ResourceNames: []string{name}})
	r := s.recv()
	s.send(&discoveryv3.DiscoveryRequest{VersionInfo: r.VersionInfo, ResponseNonce: r.Nonce, ResourceNames: []string{name}})
	s.none(100 * time.Millisecond) // polling unchanged files sends nothing

	// Istio rotates by rewriting both files.
	n := e.mint(mkEntry("f", "/file-workload", 2), time.Hour)
	cert, key := svidPEM(t, n)
	writeFile(t, filepath.Join(dir, "cert-chain.pem.new"), cert, 0o644)
	writeFile(t, filepath.Join(dir, "key.pem.new"), key, 0o644)
	for _, f := range []string{"key.pem", "cert-chain.pem"} {
		if err := os.Rename(filepath.Join(dir, f+".new"), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	// The pair may be caught half-written once (a key mismatch keeps the
	// last good secret); the new pair arrives within a few polls.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		r = s.recv()
		if certOf(t, secrets(t, r)[name]).Equal(leafOf(t, n)) {
			break
		}
	}
	if !certOf(t, secrets(t, r)[name]).Equal(leafOf(t, n)) {
		t.Fatal("rotated file pair never pushed")
	}

	// A file that disappears mid-stream keeps the last secret and the stream.
	if err := os.Remove(filepath.Join(dir, "key.pem")); err != nil {
		t.Fatal(err)
	}
	s.none(150 * time.Millisecond)
}
