package uds_test

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/hallmarkid/hallmark/internal/uds"
)

const nobody = 65534

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test runs as root: it creates directories owned by uid 65534")
	}
}

// base returns a fresh directory, root-owned and 0755, to build paths in.
func base(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

func mkdir(t *testing.T, dir string, uid int, mode fs.FileMode) {
	t.Helper()
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, uid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
}

func perm(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func mustListen(t *testing.T, path string, dirMode, sockMode fs.FileMode) net.Listener {
	t.Helper()
	l, err := uds.Listen(path, dirMode, sockMode)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func dial(path string) error {
	c, err := net.Dial("unix", path)
	if err == nil {
		c.Close()
	}
	return err
}

// Directories are created with the asked mode whatever the umask; the
// socket gets its mode; Close removes the socket.
func TestListenCreates(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	tests := []struct {
		name              string
		dirMode, sockMode fs.FileMode
	}{
		{name: "private", dirMode: 0o700, sockMode: 0o600},
		{name: "public", dirMode: 0o755, sockMode: 0o777},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := base(t)
			sock := filepath.Join(b, "a", "b", "api.sock")
			l := mustListen(t, sock, tt.dirMode, tt.sockMode)
			for _, d := range []string{filepath.Join(b, "a"), filepath.Join(b, "a", "b")} {
				if got := perm(t, d); got != tt.dirMode {
					t.Errorf("%s: mode %o, want %o", d, got, tt.dirMode)
				}
			}
			if got := perm(t, sock); got != tt.sockMode {
				t.Errorf("socket mode %o, want %o", got, tt.sockMode)
			}
			if err := dial(sock); err != nil {
				t.Fatal(err)
			}
			l.Close()
			if _, err := os.Lstat(sock); !os.IsNotExist(err) {
				t.Errorf("socket left after Close: %v", err)
			}
		})
	}
}

func TestListenRefuses(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name    string
		dirMode fs.FileMode
		setup   func(t *testing.T, b string) (sock string)
		wantErr []string // "%s" is replaced by the base directory
	}{
		{name: "dir of another user, 0777", dirMode: 0o700, setup: func(t *testing.T, b string) string {
			mkdir(t, filepath.Join(b, "p"), nobody, 0o777)
			return filepath.Join(b, "p", "api.sock")
		}, wantErr: []string{"refusing to listen on %s/p/api.sock", "directory %s/p is owned by uid 65534 (mode 0777)"}},
		{name: "dir of another user, 0700", dirMode: 0o700, setup: func(t *testing.T, b string) string {
			mkdir(t, filepath.Join(b, "p"), nobody, 0o700)
			return filepath.Join(b, "p", "api.sock")
		}, wantErr: []string{"%s/p is owned by uid 65534 (mode 0700)"}},
		{name: "public dir of another user", dirMode: 0o755, setup: func(t *testing.T, b string) string {
			mkdir(t, filepath.Join(b, "p"), nobody, 0o755)
			return filepath.Join(b, "p", "api.sock")
		}, wantErr: []string{"%s/p is owned by uid 65534 (mode 0755)"}},
		{name: "own dir writable by others", dirMode: 0o755, setup: func(t *testing.T, b string) string {
			mkdir(t, filepath.Join(b, "p"), 0, 0o777)
			return filepath.Join(b, "p", "api.sock")
		}, wantErr: []string{"%s/p (owner uid 0, mode 0777) grants write access to group or others"}},
		{name: "own sticky dir writable by others", dirMode: 0o755, setup: func(t *testing.T, b string) string {
			mkdir(t, filepath.Join(b, "p"), 0, 0o777|os.ModeSticky)
			return filepath.Join(b, "p", "api.sock")
		}, wantErr: []string{"mode 1777"}},
		{name: "own dir writable by group", dirMode: 0o700, setup: func(t *testing.T, b string) string {
			mkdir(t, filepath.Join(b, "p"), 0, 0o770)
			return filepath.Join(b, "p", "api.sock")
		}, wantErr: []string{"mode 0770", "write access to group or others"}},
		{name: "admin dir readable by others", dirMode: 0o700, setup: func(t *testing.T, b string) string {
			mkdir(t, filepath.Join(b, "p"), 0, 0o755)
			return filepath.Join(b, "p", "api.sock")
		}, wantErr: []string{"mode 0755) grants more than 0700 (chmod 700 %s/p)"}},
		{name: "ancestor writable by others", dirMode: 0o700, setup: func(t *testing.T, b string) string {
			mkdir(t, filepath.Join(b, "w"), 0, 0o777)
			return filepath.Join(b, "w", "p", "api.sock")
		}, wantErr: []string{"directory %s/w (owner uid 0, mode 0777) is writable by group or others"}},
		{name: "ancestor writable by group", dirMode: 0o700, setup: func(t *testing.T, b string) string {
			mkdir(t, filepath.Join(b, "w"), 0, 0o775)
			return filepath.Join(b, "w", "p", "api.sock")
		}, wantErr: []string{"%s/w (owner uid 0, mode 0775) is writable"}},
		{name: "ancestor of another user", dirMode: 0o700, setup: func(t *testing.T, b string) string {
			mkdir(t, filepath.Join(b, "u"), nobody, 0o755)
			mkdir(t, filepath.Join(b, "u", "p"), 0, 0o700)
			return filepath.Join(b, "u", "p", "api.sock")
		}, wantErr: []string{"directory %s/u is owned by uid 65534 (mode 0755); only root may own"}},
		{name: "socket dir is a symlink", dirMode: 0o700, setup: func(t *testing.T, b string) string {
			mkdir(t, filepath.Join(b, "real"), 0, 0o700)
			if err := os.Symlink("real", filepath.Join(b, "link")); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(b, "link", "api.sock")
		}, wantErr: []string{"%s/link is a symlink"}},
		{name: "symlink of another user in a sticky dir", dirMode: 0o700, setup: func(t *testing.T, b string) string {
			mkdir(t, filepath.Join(b, "tmp"), 0, 0o777|os.ModeSticky)
			mkdir(t, filepath.Join(b, "real"), 0, 0o755)
			if err := os.Symlink(filepath.Join(b, "real"), filepath.Join(b, "tmp", "l")); err != nil {
				t.Fatal(err)
			}
			if err := os.Lchown(filepath.Join(b, "tmp", "l"), nobody, nobody); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(b, "tmp", "l", "p", "api.sock")
		}, wantErr: []string{"symlink %s/tmp/l is owned by uid 65534"}},
		{name: "symlink to an unsafe dir", dirMode: 0o700, setup: func(t *testing.T, b string) string {
			mkdir(t, filepath.Join(b, "w"), 0, 0o777)
			if err := os.Symlink("w", filepath.Join(b, "l")); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(b, "l", "p", "api.sock")
		}, wantErr: []string{"directory %s/w (owner uid 0, mode 0777) is writable"}},
		{name: "socket is a symlink", dirMode: 0o700, setup: func(t *testing.T, b string) string {
			mkdir(t, filepath.Join(b, "p"), 0, 0o700)
			if err := os.Symlink(filepath.Join(b, "elsewhere.sock"), filepath.Join(b, "p", "api.sock")); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(b, "p", "api.sock")
		}, wantErr: []string{"%s/p/api.sock is a symlink"}},
		{name: "socket path is a file", dirMode: 0o700, setup: func(t *testing.T, b string) string {
			mkdir(t, filepath.Join(b, "p"), 0, 0o700)
			if err := os.WriteFile(filepath.Join(b, "p", "api.sock"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(b, "p", "api.sock")
		}, wantErr: []string{"exists and is not a socket"}},
		{name: "a file in the way", dirMode: 0o700, setup: func(t *testing.T, b string) string {
			if err := os.WriteFile(filepath.Join(b, "f"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(b, "f", "p", "api.sock")
		}, wantErr: []string{"%s/f is not a directory"}},
		{name: "dir mode writable by others", dirMode: 0o777, setup: func(t *testing.T, b string) string {
			return filepath.Join(b, "p", "api.sock")
		}, wantErr: []string{"directory mode 0777"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := base(t)
			sock := tt.setup(t, b)
			l, err := uds.Listen(sock, tt.dirMode, 0o600)
			if err == nil {
				l.Close()
				t.Fatal("Listen succeeded")
			}
			for _, w := range append([]string{"uds: "}, tt.wantErr...) {
				if w = strings.ReplaceAll(w, "%s", b); !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nwant %q", err, w)
				}
			}
			if _, err := os.Lstat(filepath.Join(b, "elsewhere.sock")); !os.IsNotExist(err) {
				t.Errorf("something was created through a symlink: %v", err)
			}
		})
	}
}

func TestListenAccepts(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name    string
		dirMode fs.FileMode
		setup   func(t *testing.T, b string) (sock string)
	}{
		{name: "sticky ancestor like /tmp", dirMode: 0o700, setup: func(t *testing.T, b string) string {
			mkdir(t, filepath.Join(b, "tmp"), 0, 0o777|os.ModeSticky)
			return filepath.Join(b, "tmp", "p", "api.sock")
		}},
		{name: "own dir prepared 0700", dirMode: 0o700, setup: func(t *testing.T, b string) string {
			mkdir(t, filepath.Join(b, "p"), 0, 0o700)
			return filepath.Join(b, "p", "api.sock")
		}},
		{name: "public dir prepared 0750", dirMode: 0o755, setup: func(t *testing.T, b string) string {
			mkdir(t, filepath.Join(b, "p"), 0, 0o750)
			return filepath.Join(b, "p", "api.sock")
		}},
		{name: "symlinked ancestor", dirMode: 0o700, setup: func(t *testing.T, b string) string {
			mkdir(t, filepath.Join(b, "real"), 0, 0o755)
			if err := os.Symlink("./real/../real", filepath.Join(b, "alias")); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(b, "alias", "p", "api.sock")
		}},
		{name: "root-owned symlink in a sticky dir", dirMode: 0o700, setup: func(t *testing.T, b string) string {
			mkdir(t, filepath.Join(b, "tmp"), 0, 0o777|os.ModeSticky)
			mkdir(t, filepath.Join(b, "real"), 0, 0o755)
			if err := os.Symlink(filepath.Join(b, "real"), filepath.Join(b, "tmp", "l")); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(b, "tmp", "l", "p", "api.sock")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sock := tt.setup(t, base(t))
			mustListen(t, sock, tt.dirMode, 0o600)
			if err := dial(sock); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A live socket is never unlinked: not one of ours (its lock is held),
// not one of a process that holds no lock.
func TestListenLiveSocket(t *testing.T) {
	sock := filepath.Join(base(t), "p", "api.sock")
	mustListen(t, sock, 0o700, 0o600)
	_, err := uds.Listen(sock, 0o700, 0o600)
	var inUse *uds.InUseError
	if !errors.As(err, &inUse) || inUse.PID != os.Getpid() || inUse.Path != sock {
		t.Fatalf("second Listen: %v, want InUseError naming our pid", err)
	}
	if want := "another process (pid "; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q, want %q", err, want)
	}
	if err := dial(sock); err != nil {
		t.Fatalf("the first listener lost its socket: %v", err)
	}

	// A listener that knows nothing of lock files.
	foreign := filepath.Join(base(t), "p", "api.sock")
	if err := os.Mkdir(filepath.Dir(foreign), 0o700); err != nil {
		t.Fatal(err)
	}
	fl, err := net.Listen("unix", foreign)
	if err != nil {
		t.Fatal(err)
	}
	defer fl.Close()
	_, err = uds.Listen(foreign, 0o700, 0o600)
	if !errors.As(err, &inUse) || inUse.PID != 0 {
		t.Fatalf("Listen on a foreign live socket: %v, want InUseError", err)
	}
	if err := dial(foreign); err != nil {
		t.Fatalf("the foreign listener lost its socket: %v", err)
	}
}

// A socket nobody listens on (its process died) is replaced.
func TestListenReplacesStaleSocket(t *testing.T) {
	sock := filepath.Join(base(t), "p", "api.sock")
	if err := os.Mkdir(filepath.Dir(sock), 0o700); err != nil {
		t.Fatal(err)
	}
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ul.SetUnlinkOnClose(false)
	ul.Close()
	if _, err := os.Lstat(sock); err != nil {
		t.Fatalf("no stale socket: %v", err)
	}
	mustListen(t, sock, 0o700, 0o600)
	if err := dial(sock); err != nil {
		t.Fatal(err)
	}
}

// Closing removes the socket only if the path still names it.
func TestCloseKeepsReplacedSocket(t *testing.T) {
	sock := filepath.Join(base(t), "p", "api.sock")
	l := mustListen(t, sock, 0o700, 0o600)
	if err := os.Remove(sock); err != nil {
		t.Fatal(err)
	}
	other, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	l.Close()
	if err := dial(sock); err != nil {
		t.Fatalf("Close removed a socket it did not create: %v", err)
	}
}

// Daemons starting at once on one path: exactly one listens.
func TestListenRace(t *testing.T) {
	b := base(t)
	for round := range 20 {
		sock := filepath.Join(b, "p", "api.sock")
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			winners []net.Listener
		)
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				l, err := uds.Listen(sock, 0o700, 0o600)
				var inUse *uds.InUseError
				switch {
				case err == nil:
					mu.Lock()
					winners = append(winners, l)
					mu.Unlock()
				case !errors.As(err, &inUse):
					t.Errorf("round %d: %v", round, err)
				}
			}()
		}
		wg.Wait()
		if len(winners) != 1 {
			t.Fatalf("round %d: %d listeners", round, len(winners))
		}
		if err := dial(sock); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		winners[0].Close()
	}
}

func TestCheckDial(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name    string
		trusted []uint32
		setup   func(t *testing.T, b string) (sock string)
		wantErr []string // "" entries: none; "%s" is the base directory
	}{
		{name: "root's socket in root's dir", trusted: []uint32{0}, setup: func(t *testing.T, b string) string {
			mkdir(t, filepath.Join(b, "p"), 0, 0o700)
			return listenAs(t, filepath.Join(b, "p", "api.sock"), 0)
		}},
		{name: "the caller's socket and dir", trusted: []uint32{0, nobody}, setup: func(t *testing.T, b string) string {
			mkdir(t, filepath.Join(b, "p"), nobody, 0o700)
			return listenAs(t, filepath.Join(b, "p", "api.sock"), nobody)
		}},
		{name: "socket of another user", trusted: []uint32{0}, setup: func(t *testing.T, b string) string {
			mkdir(t, filepath.Join(b, "p"), 0, 0o755)
			return listenAs(t, filepath.Join(b, "p", "api.sock"), nobody)
		}, wantErr: []string{"refusing to talk to %s/p/api.sock: the socket is owned by uid 65534; only root may own it"}},
		{name: "dir of another user", trusted: []uint32{0}, setup: func(t *testing.T, b string) string {
			mkdir(t, filepath.Join(b, "p"), nobody, 0o755)
			return listenAs(t, filepath.Join(b, "p", "api.sock"), 0)
		}, wantErr: []string{"directory %s/p is owned by uid 65534"}},
		{name: "dir writable by others", trusted: []uint32{0}, setup: func(t *testing.T, b string) string {
			mkdir(t, filepath.Join(b, "p"), 0, 0o777)
			return listenAs(t, filepath.Join(b, "p", "api.sock"), 0)
		}, wantErr: []string{"%s/p (owner uid 0, mode 0777) is writable by group or others"}},
		{name: "socket directly in a sticky dir", trusted: []uint32{0}, setup: func(t *testing.T, b string) string {
			mkdir(t, filepath.Join(b, "tmp"), 0, 0o777|os.ModeSticky)
			return listenAs(t, filepath.Join(b, "tmp", "api.sock"), 0)
		}, wantErr: []string{"mode 1777) is writable by group or others, who could put their own socket there"}},
		{name: "ancestor writable by others", trusted: []uint32{0}, setup: func(t *testing.T, b string) string {
			mkdir(t, filepath.Join(b, "w"), 0, 0o777)
			mkdir(t, filepath.Join(b, "w", "p"), 0, 0o700)
			return listenAs(t, filepath.Join(b, "w", "p", "api.sock"), 0)
		}, wantErr: []string{"%s/w (owner uid 0, mode 0777)"}},
		{name: "sticky ancestor", trusted: []uint32{0}, setup: func(t *testing.T, b string) string {
			mkdir(t, filepath.Join(b, "tmp"), 0, 0o777|os.ModeSticky)
			mkdir(t, filepath.Join(b, "tmp", "p"), 0, 0o700)
			return listenAs(t, filepath.Join(b, "tmp", "p", "api.sock"), 0)
		}},
		{name: "socket is a symlink", trusted: []uint32{0}, setup: func(t *testing.T, b string) string {
			mkdir(t, filepath.Join(b, "p"), 0, 0o700)
			target := listenAs(t, filepath.Join(b, "p", "real.sock"), 0)
			if err := os.Symlink(target, filepath.Join(b, "p", "api.sock")); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(b, "p", "api.sock")
		}, wantErr: []string{"%s/p/api.sock: it is a symlink"}},
		{name: "not a socket", trusted: []uint32{0}, setup: func(t *testing.T, b string) string {
			mkdir(t, filepath.Join(b, "p"), 0, 0o700)
			if err := os.WriteFile(filepath.Join(b, "p", "api.sock"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(b, "p", "api.sock")
		}, wantErr: []string{"it is not a socket"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := base(t)
			sock := tt.setup(t, b)
			got, err := uds.CheckDialAs(sock, tt.trusted)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if got != sock {
					t.Errorf("path %q, want %q", got, sock)
				}
				return
			}
			if err == nil {
				t.Fatal("CheckDial accepted the socket")
			}
			for _, w := range append([]string{"uds: "}, tt.wantErr...) {
				if w = strings.ReplaceAll(w, "%s", b); !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nwant %q", err, w)
				}
			}
		})
	}
}

func TestCheckDialMissing(t *testing.T) {
	for _, sock := range []string{filepath.Join(t.TempDir(), "api.sock"), filepath.Join(t.TempDir(), "nodir", "api.sock")} {
		_, err := uds.CheckDial(sock)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: %v, want ErrNotExist", sock, err)
		}
		if err != nil && strings.Contains(err.Error(), "refusing") {
			t.Errorf("%s: a missing socket is not a refusal: %v", sock, err)
		}
	}
}

// listenAs makes a socket at path owned by uid and returns path.
func listenAs(t *testing.T, path string, uid int) string {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if err := os.Chown(path, uid, uid); err != nil {
		t.Fatal(err)
	}
	return path
}
