package pgtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvServer names an environment variable holding a connection string to
// use instead of the local cluster; its role must be allowed to CREATE
// DATABASE.
const EnvServer = "HALLMARK_TEST_POSTGRES"

const (
	// Role is the login role tests connect as.
	Role     = "hallmark_test"
	password = "hallmark_test" // loopback only; the role is not a superuser
	dbPrefix = "hallmark_test_"
)

var (
	setupOnce sync.Once
	adminURL  string // connection string to the "postgres" database as Role
	local     bool   // adminURL is the local cluster this package manages
	setupErr  error
	dbCounter atomic.Int64
)

// Start makes sure a PostgreSQL server is running and returns a connection
// string (postgres://hallmark_test:...@127.0.0.1:PORT/NAME?sslmode=disable)
// to a new, empty database with a unique name, owned by Role. The database
// is dropped (closing leftover connections) when t ends.
func Start(t testing.TB) string {
	t.Helper()
	setupOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // apt-get may run
		defer cancel()
		adminURL, local, setupErr = setup(ctx)
		if setupErr == nil && local {
			dropStale(ctx)
		}
	})
	if setupErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("pgtest: no PostgreSQL (required under CI=true): %v", setupErr)
		}
		t.Skipf("pgtest: skipping %s: no PostgreSQL: %v", callerPackage(), setupErr)
	}

	name := fmt.Sprintf("%s%d_%d_%s", dbPrefix, os.Getpid(), dbCounter.Add(1), randHex(4))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := adminExec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE template0 ENCODING 'UTF8'"); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// FORCE can race a backend that is starting or ending (it then
		// refuses, naming the role of a process it may not signal): retry.
		// A database left behind is tidiness, not a test failure: the next
		// run's dropStale removes it once this process is gone.
		var err error
		for attempt := range 5 {
			if err = adminExec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err == nil {
				return
			}
			time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
		}
		t.Logf("pgtest: drop database %s (left for a later run to remove): %v", name, err)
	})
	u, err := url.Parse(adminURL)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// adminExec runs one statement on a fresh connection to the admin database.
func adminExec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// setup finds or prepares a server and returns the admin connection string
// and whether it is the local cluster.
func setup(ctx context.Context) (string, bool, error) {
	if s := os.Getenv(EnvServer); s != "" {
		if err := ping(ctx, s); err != nil {
			return "", false, fmt.Errorf("%s: %w", EnvServer, err)
		}
		return s, false, nil
	}
	// Fast path: the cluster is up and the role exists.
	if c, err := pickCluster(ctx); err == nil && c.online {
		if u := localURL(c.port); ping(ctx, u) == nil {
			return u, true, nil
		}
	}

	unlock, err := lockFile(filepath.Join(os.TempDir(), "hallmark-pgtest.lock"))
	if err != nil {
		return "", false, err
	}
	defer unlock()

	c, err := pickCluster(ctx)
	if errors.Is(err, errNotInstalled) {
		if err := install(ctx); err != nil {
			return "", false, err
		}
		c, err = pickCluster(ctx)
	}
	if err != nil {
		return "", false, err
	}
	if !c.online {
		if out, err := exec.CommandContext(ctx, "pg_ctlcluster", c.version, c.name, "start").CombinedOutput(); err != nil {
			return "", false, fmt.Errorf("pg_ctlcluster %s %s start: %v: %s", c.version, c.name, err, bytes.TrimSpace(out))
		}
	}
	u := localURL(c.port)
	if ping(ctx, u) == nil {
		return u, true, nil
	}
	if err := ensureRole(ctx, c); err != nil {
		return "", false, err
	}
	// The server may still be starting.
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := ping(ctx, u)
		if err == nil {
			return u, true, nil
		}
		if time.Now().After(deadline) {
			return "", false, fmt.Errorf("connect as %s to 127.0.0.1:%d (pg_hba.conf must allow password logins from 127.0.0.1): %w", Role, c.port, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func localURL(port int) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(Role, password),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Path:     "/postgres",
		RawQuery: "sslmode=disable&connect_timeout=10",
	}
	return u.String()
}

func ping(ctx context.Context, connString string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.Ping(ctx)
}

var errNotInstalled = errors.New("PostgreSQL is not installed (no pg_lsclusters; Debian: apt-get install postgresql)")

type cluster struct {
	version, name string
	port          int
	online        bool
}

// pickCluster returns the local cluster to use: version 15 if there is
// one, else the newest.
func pickCluster(ctx context.Context) (cluster, error) {
	if _, err := exec.LookPath("pg_lsclusters"); err != nil {
		return cluster{}, errNotInstalled
	}
	out, err := exec.CommandContext(ctx, "pg_lsclusters", "-h").Output()
	if err != nil {
		return cluster{}, fmt.Errorf("pg_lsclusters: %w", err)
	}
	var best cluster
	found := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 {
			continue
		}
		port, err := strconv.Atoi(f[2])
		if err != nil {
			continue
		}
		c := cluster{version: f[0], name: f[1], port: port, online: strings.HasPrefix(f[3], "online")}
		if !found || c.version == "15" || (best.version != "15" && versionLess(best.version, c.version)) {
			best, found = c, true
		}
	}
	if !found {
		return cluster{}, errors.New("PostgreSQL is installed but has no cluster (pg_lsclusters is empty; create one with pg_createcluster)")
	}
	return best, nil
}

func versionLess(a, b string) bool {
	x, _ := strconv.Atoi(a)
	y, _ := strconv.Atoi(b)
	return x < y
}

// install installs Debian's PostgreSQL, which creates and starts a cluster.
func install(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w; not root, so not installing it", errNotInstalled)
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Errorf("%w; no apt-get to install it with", errNotInstalled)
	}
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	for _, args := range [][]string{{"update", "-qq"}, {"install", "-y", "-qq", "postgresql"}} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %v: %s", strings.Join(args, " "), err, tail(out))
		}
	}
	return nil
}

// ensureRole creates Role (or resets its password and rights) through psql
// run as the postgres OS user over the unix socket.
func ensureRole(ctx context.Context, c cluster) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("role %s cannot log in and creating it needs root (or set %s)", Role, EnvServer)
	}
	sql := fmt.Sprintf(`DO $$ BEGIN
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%[1]s') THEN
		CREATE ROLE %[1]s LOGIN CREATEDB PASSWORD '%[2]s';
	ELSE
		ALTER ROLE %[1]s LOGIN CREATEDB PASSWORD '%[2]s';
	END IF;
END $$;`, Role, password)
	var lastErr error
	for range 3 { // two binaries may create the role at once (duplicate key): retry
		cmd := exec.CommandContext(ctx, "runuser", "-u", "postgres", "--",
			"psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-p", strconv.Itoa(c.port), "-d", "postgres", "-c", sql)
		cmd.Dir = "/"
		out, err := cmd.CombinedOutput()
		if err == nil {
			return nil
		}
		lastErr = fmt.Errorf("create role %s with psql: %v: %s", Role, err, bytes.TrimSpace(out))
		time.Sleep(500 * time.Millisecond)
	}
	return lastErr
}

// dropStale drops databases left by test processes that no longer exist
// (killed before their cleanup ran).
func dropStale(ctx context.Context) {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba
		WHERE r.rolname = $1 AND starts_with(datname, $2)`, Role, dbPrefix)
	if err != nil {
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return
	}
	for _, name := range names {
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(name, dbPrefix), "_")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
			continue // its process (or one with its PID) is alive
		}
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	}
}

// lockFile takes an exclusive flock on path until unlock is called.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func tail(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > 500 {
		b = b[len(b)-500:]
	}
	return string(b)
}

// callerPackage names the package of the first caller outside pgtest.
func callerPackage() string {
	pcs := make([]uintptr, 16)
	n := runtime.Callers(2, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	for {
		f, more := frames.Next()
		fn := f.Function
		if !strings.Contains(fn, "/internal/pgtest.") && fn != "" {
			// "github.com/x/y/pkg_test.TestZ.func1" -> "github.com/x/y/pkg_test"
			slash := strings.LastIndex(fn, "/")
			if dot := strings.Index(fn[slash+1:], "."); dot >= 0 {
				return fn[:slash+1+dot]
			}
			return fn
		}
		if !more {
			return "this package"
		}
	}
}
