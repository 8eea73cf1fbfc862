package test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// selfSignedPEM returns a certificate and its key, PEM-encoded.
func selfSignedPEM(t *testing.T) (cert, key []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "file-cert"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// mkdirOwned creates dir with mode, owned by uid:gid.
func mkdirOwned(t *testing.T, dir string, mode os.FileMode, uid, gid int) {
	t.Helper()
	if err := os.Mkdir(dir, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
}

// SDS file-cert:/file-root: are served with the caller's rights: every
// directory on the way must be searchable by the caller, the file readable,
// and nothing may lead out of file_dir.
func TestSDSFilesReadAsCaller(t *testing.T) {
	fileDir := filepath.Join(os.TempDir(), fmt.Sprintf("hm-files-%d", time.Now().UnixNano()))
	mkdirOwned(t, fileDir, 0o755, 0, 0)
	t.Cleanup(func() { os.RemoveAll(fileDir) })
	_, ag, bin := callerEnvSetup(t, fmt.Sprintf("sds {\n  file_dir = %q\n}", fileDir))
	child := installTestBinary(t, filepath.Join(bin, "c.test"), 0, 0o755)

	cert, key := selfSignedPEM(t)
	pair := func(dir string) string {
		return "file-cert:" + filepath.Join(dir, "cert.pem") + "~" + filepath.Join(dir, "key.pem")
	}
	put := func(dir string) {
		writeOwned(t, filepath.Join(dir, "cert.pem"), cert)
		writeOwned(t, filepath.Join(dir, "key.pem"), key)
	}
	public := filepath.Join(fileDir, "public")
	mkdirOwned(t, public, 0o755, 0, 0)
	put(public)
	// Another user's private directory with world-readable files in it.
	private := filepath.Join(fileDir, "private")
	mkdirOwned(t, private, 0o700, 1234, 1234)
	put(private)
	// A directory for group 4243 only.
	group := filepath.Join(fileDir, "group")
	mkdirOwned(t, group, 0o750, 0, 4243)
	put(group)
	// A symlink inside file_dir into the private directory, one out of
	// file_dir, and a nested one that resolves inside the public one.
	symlink(t, "private", filepath.Join(fileDir, "into-private"))
	symlink(t, "/etc/passwd", filepath.Join(fileDir, "escape.pem"))
	outside := filepath.Join(filepath.Dir(fileDir), filepath.Base(fileDir)+"-outside")
	mkdirOwned(t, outside, 0o755, 0, 0)
	t.Cleanup(func() { os.RemoveAll(outside) })
	put(outside)
	symlink(t, "../"+filepath.Base(outside), filepath.Join(fileDir, "escape-dir"))
	symlink(t, "public", filepath.Join(fileDir, "..data"))

	names := []string{
		pair(public),
		pair(private),
		pair(filepath.Join(fileDir, "into-private")),
		pair(group),
		"file-root:" + filepath.Join(fileDir, "escape.pem"),
		pair(filepath.Join(fileDir, "escape-dir")),
		pair(filepath.Join(fileDir, "..data")),
	}
	tests := []struct {
		name string
		cred *syscall.Credential
		want []string // per name: "ok" or an error code and message part
	}{
		{
			name: "uid 65534",
			cred: &syscall.Credential{Uid: 65534, Gid: 65534},
			want: []string{"ok", "PermissionDenied: sds: file", "PermissionDenied: sds: file", "PermissionDenied: sds: file",
				"PermissionDenied: sds: file", "PermissionDenied: sds: file", "ok"},
		},
		{
			name: "uid 65534 in group 4243",
			cred: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{4243}},
			want: []string{"ok", "PermissionDenied", "PermissionDenied", "ok", "PermissionDenied", "PermissionDenied", "ok"},
		},
		{
			name: "owner of the private directory",
			cred: &syscall.Credential{Uid: 1234, Gid: 1234},
			want: []string{"ok", "ok", "ok", "PermissionDenied", "PermissionDenied", "PermissionDenied", "ok"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(child, append([]string{"--", ag.SocketPath}, names...)...)
			cmd.Env = append(os.Environ(), callerEnv+"=sds")
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: tt.cred}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != len(names) {
				t.Fatalf("child printed %d lines for %d names:\n%s", len(lines), len(names), out)
			}
			for i, line := range lines {
				got := strings.TrimPrefix(line, names[i]+" ")
				w := tt.want[i]
				if w != "ok" {
					w = "err " + w
				}
				if !strings.HasPrefix(got, w) {
					t.Errorf("%s: %q, want %q", names[i], got, w)
				}
			}
		})
	}
}

func writeOwned(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}
