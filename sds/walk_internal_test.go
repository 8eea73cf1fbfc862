package sds

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// walkTree builds a file_dir (in a directory every uid can search) for
// the walk tests and returns its path.
func walkTree(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test runs as root: it creates files owned by other users")
	}
	top, err := os.MkdirTemp("", "sds-walk-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	if err := os.Chmod(top, 0o755); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(top, "files")
	dir := func(rel string, mode os.FileMode, uid, gid int) {
		p := filepath.Join(top, rel)
		if err := os.Mkdir(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	file := func(rel string, mode os.FileMode, uid, gid int) {
		p := filepath.Join(top, rel)
		if err := os.WriteFile(p, []byte("x"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, rel string) {
		if err := os.Symlink(target, filepath.Join(top, rel)); err != nil {
			t.Fatal(err)
		}
	}
	dir("files", 0o755, 0, 0)
	dir("files/pub", 0o755, 0, 0)
	file("files/pub/f.pem", 0o644, 0, 0)
	file("files/pub/root-only.pem", 0o600, 0, 0)
	file("files/pub/own.pem", 0o600, 1000, 1000)
	file("files/pub/owner-denied.pem", 0o044, 1000, 0) // owner bits win over group/other
	dir("files/priv", 0o700, 1000, 1000)
	file("files/priv/f.pem", 0o644, 1000, 1000)
	dir("files/grp", 0o750, 0, 2000)
	file("files/grp/f.pem", 0o644, 0, 0)
	dir("files/noexec", 0o644, 0, 0)
	file("files/noexec/f.pem", 0o644, 0, 0)
	dir("files/acl", 0o755, 0, 0)
	file("files/acl/f.pem", 0o644, 0, 0)
	setACL(t, filepath.Join(base, "acl"))
	file("files/aclfile.pem", 0o644, 0, 0)
	setACL(t, filepath.Join(base, "aclfile.pem"))
	link("pub", "files/link-pub")
	link("priv", "files/link-priv")
	link("link-pub/f.pem", "files/chain.pem")
	link("/etc/passwd", "files/abs.pem")
	link("../outside/f.pem", "files/up.pem")
	link("pub/../priv/f.pem", "files/up-in.pem")
	link("loop2", "files/loop1")
	link(strings.Repeat("pub/../", 300)+"pub/f.pem", "files/long1.pem")
	link(strings.Repeat("pub/../", 550)+"long1.pem", "files/long2.pem")
	link(strings.Repeat("pub/../", 550)+"long2.pem", "files/long3.pem")
	link("loop1", "files/loop2")
	dir("outside", 0o755, 0, 0)
	file("outside/f.pem", 0o644, 0, 0)
	return base
}

// setACL gives path a POSIX access ACL with a named user entry (user 4321
// may read), written as the kernel's xattr format.
func setACL(t *testing.T, path string) {
	t.Helper()
	const undefined = 0xffffffff
	entries := []struct {
		tag, perm uint16
		id        uint32
	}{
		{0x01, 7, undefined}, // user::rwx
		{0x02, 4, 4321},      // user:4321:r--
		{0x04, 5, undefined}, // group::r-x
		{0x10, 5, undefined}, // mask::r-x
		{0x20, 5, undefined}, // other::r-x
	}
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint16(b, e.tag)
		b = binary.LittleEndian.AppendUint16(b, e.perm)
		b = binary.LittleEndian.AppendUint32(b, e.id)
	}
	if err := unix.Setxattr(path, "system.posix_acl_access", b, 0); err != nil {
		t.Fatalf("set ACL on %s: %v (file system without ACLs?)", path, err)
	}
}

func TestWalkerAsCaller(t *testing.T) {
	base := walkTree(t)
	var (
		root   = fileCred{}
		nobody = fileCred{uid: 65534, gid: 65534}
		owner  = fileCred{uid: 1000, gid: 1000}
		member = fileCred{uid: 65534, gid: 65534, groups: []uint32{7, 2000}}
	)
	tests := []struct {
		name    string
		cred    fileCred
		rel     string
		wantErr string // empty: readable
	}{
		{name: "public file", cred: nobody, rel: "pub/f.pem"},
		{name: "root-only file", cred: nobody, rel: "pub/root-only.pem", wantErr: "no read permission"},
		{name: "root reads root-only", cred: root, rel: "pub/root-only.pem"},
		{name: "owner reads own 0600", cred: owner, rel: "pub/own.pem"},
		{name: "owner bits deny the owner", cred: owner, rel: "pub/owner-denied.pem", wantErr: "no read permission"},
		{name: "others read 0044 of another owner", cred: nobody, rel: "pub/owner-denied.pem"},
		{name: "0644 file in another user's 0700 dir", cred: nobody, rel: "priv/f.pem", wantErr: "priv: no search permission"},
		{name: "the 0700 dir's owner", cred: owner, rel: "priv/f.pem"},
		{name: "through a symlink into the 0700 dir", cred: nobody, rel: "link-priv/f.pem", wantErr: "priv: no search permission"},
		{name: "symlink .. into the 0700 dir", cred: nobody, rel: "up-in.pem", wantErr: "priv: no search permission"},
		{name: "group dir, not a member", cred: nobody, rel: "grp/f.pem", wantErr: "grp: no search permission"},
		{name: "group dir, supplementary member", cred: member, rel: "grp/f.pem"},
		{name: "readable dir without search", cred: nobody, rel: "noexec/f.pem", wantErr: "noexec: no search permission"},
		{name: "dir with an ACL", cred: nobody, rel: "acl/f.pem", wantErr: "POSIX ACL"},
		{name: "file with an ACL", cred: nobody, rel: "aclfile.pem", wantErr: "POSIX ACL"},
		{name: "root ignores ACLs", cred: root, rel: "aclfile.pem"},
		{name: "symlink chain inside", cred: nobody, rel: "chain.pem"},
		{name: "absolute symlink", cred: root, rel: "abs.pem", wantErr: errEscape.Error()},
		{name: "relative symlink out", cred: root, rel: "up.pem", wantErr: errEscape.Error()},
		{name: "symlink loop", cred: root, rel: "loop1", wantErr: "too many levels of symbolic links"},
		{name: "300 steps", cred: nobody, rel: "long1.pem"},
		{name: "850 steps", cred: nobody, rel: "long2.pem"},
		{name: "more than 1024 steps", cred: nobody, rel: "long3.pem", wantErr: "more than 1024 path components"},
		{name: "file as a directory", cred: root, rel: "pub/f.pem/x", wantErr: "not a directory"},
		{name: "missing", cred: nobody, rel: "pub/none.pem", wantErr: "no such file"},
		{name: "a directory", cred: root, rel: "pub", wantErr: errNotRegular.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := walker{cred: tt.cred}
			f, err := w.openFile(base, tt.rel)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("openFile(%s) as %s: %v", tt.rel, tt.cred, err)
				}
				f.Close()
				return
			}
			if err == nil {
				f.Close()
				t.Fatalf("openFile(%s) as %s succeeded, want %q", tt.rel, tt.cred, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("openFile(%s) as %s: %v, want %q", tt.rel, tt.cred, err, tt.wantErr)
			}
		})
	}
}

// file_dir's own ancestors must be searchable by the caller too.
func TestWalkerChecksFileDirAncestors(t *testing.T) {
	base := walkTree(t)
	hidden := filepath.Join(filepath.Dir(base), "hidden")
	if err := os.Mkdir(hidden, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(base, filepath.Join(hidden, "files")); err != nil {
		t.Fatal(err)
	}
	// file_dir reached through a symlink: its target's directories count.
	if err := os.Symlink(filepath.Join(hidden, "files"), base); err != nil {
		t.Fatal(err)
	}
	w := walker{cred: fileCred{uid: 65534, gid: 65534}}
	_, err := w.openFile(base, "pub/f.pem")
	var denied *deniedError
	if !errors.As(err, &denied) || denied.path != hidden {
		t.Fatalf("openFile below a 0700 ancestor: %v, want no search permission on %s", err, hidden)
	}
	w = walker{cred: fileCred{}}
	f, err := w.openFile(base, "pub/f.pem")
	if err != nil {
		t.Fatalf("root: %v", err)
	}
	f.Close()
}

func TestWalkerNoFDLeak(t *testing.T) {
	base := walkTree(t)
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	before := len(ents)
	for range 200 {
		for _, rel := range []string{"pub/f.pem", "priv/f.pem", "chain.pem", "abs.pem", "loop1", "pub/f.pem/x", "pub", "up-in.pem"} {
			w := walker{cred: fileCred{uid: 65534, gid: 65534}}
			if f, err := w.openFile(base, rel); err == nil {
				f.Close()
			}
		}
	}
	ents, err = os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != before {
		t.Fatalf("open fds %d, want %d", len(ents), before)
	}
}

func BenchmarkWalkerOpenFile(b *testing.B) {
	top, err := os.MkdirTemp("", "sds-walk-bench-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(top)
	if err := os.Chmod(top, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(top, "a", "b"), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(top, "a", "b", "f.pem"), []byte("x"), 0o644); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		w := walker{cred: fileCred{uid: 65534, gid: 65534}}
		f, err := w.openFile(top, "a/b/f.pem")
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}
