// Package kubetest runs a real Kubernetes API server for tests: Debian's
// etcd and a kube-apiserver built by scripts/kube-apiserver.sh (cached at
// $HOME/.cache/hallmark/kube-apiserver-<version>, or named by
// HALLMARK_KUBE_APISERVER). One cluster is started per test binary, on
// first use, and stopped by Stop (call it from TestMain).
//
// Authentication is a static token file: an admin token (system:masters)
// for the test itself, and tokens for the users a test asks for, so that
// the RBAC rules Hallmark ships are what authorises its calls. There is no
// kubelet, scheduler or controller manager.
//
// It is test support: production code must not import it.
package kubetest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// Version is the kube-apiserver version the tests run.
const Version = "v1.34.4"

// Users with tokens in the static token file: name -> groups.
var users = map[string][]string{
	"system:serviceaccount:hallmark:hallmark-server": {"system:serviceaccounts", "system:serviceaccounts:hallmark", "system:authenticated"},
}

// Cluster is a running API server.
type Cluster struct {
	URL    string // https://127.0.0.1:port
	CAFile string // the serving certificate (self-signed)
	Dir    string

	client *http.Client
	procs  []*exec.Cmd
	logs   []*bytes.Buffer
}

var (
	once    sync.Once
	cluster *Cluster
	errInit error
)

// APIServerPath returns where the kube-apiserver binary is expected.
func APIServerPath() string {
	if p := os.Getenv("HALLMARK_KUBE_APISERVER"); p != "" {
		return p
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "hallmark", "kube-apiserver-"+Version)
}

// Start returns the test binary's cluster, starting it on first use. A
// missing binary fails the test: `make deps` (scripts/deps.sh) builds it.
func Start(t testing.TB) *Cluster {
	t.Helper()
	once.Do(func() { cluster, errInit = start() })
	if errInit != nil {
		t.Fatalf("kubetest: %v", errInit)
	}
	return cluster
}

// Stop stops the cluster, if one was started, and removes its files.
func Stop() {
	if cluster == nil {
		return
	}
	for _, p := range cluster.procs {
		_ = syscall.Kill(-p.Process.Pid, syscall.SIGTERM)
	}
	for _, p := range cluster.procs {
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	os.RemoveAll(cluster.Dir)
	cluster = nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Token returns the static token of user (the admin's for "admin").
func Token(user string) string {
	if user == "admin" {
		return "kubetest-admin-token"
	}
	return "kubetest-" + strings.NewReplacer(":", "-").Replace(user)
}

// start starts etcd and the API server, again on other ports (up to three
// times) when one of them lost its port to another process between
// freePort and its bind: tests run in parallel packages, each taking ports.
func start() (*Cluster, error) {
	var err error
	for range 3 {
		var c *Cluster
		if c, err = startOnce(); err == nil || !strings.Contains(err.Error(), "address already in use") {
			return c, err
		}
	}
	return nil, err
}

func startOnce() (_ *Cluster, err error) {
	bin := APIServerPath()
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("kube-apiserver %s: %w (run scripts/kube-apiserver.sh, or make deps)", Version, err)
	}
	etcd, err := exec.LookPath("etcd")
	if err != nil {
		return nil, fmt.Errorf("etcd: %w (apt-get install etcd-server, or make deps)", err)
	}
	dir, err := os.MkdirTemp("", "kubetest")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir}
	defer func() {
		if err != nil {
			logs := c.logText()
			cluster = c
			Stop()
			err = fmt.Errorf("%w\n%s", err, logs)
		}
	}()
	// Service-account signing key (the API server requires one).
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "sa.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
		return nil, err
	}
	tokens := Token("admin") + ",admin,admin,system:masters\n"
	i := 0
	for u, groups := range users {
		i++
		tokens += fmt.Sprintf("%s,%s,uid%d,\"%s\"\n", Token(u), u, i, strings.Join(groups, ","))
	}
	if err := os.WriteFile(filepath.Join(dir, "tokens.csv"), []byte(tokens), 0o600); err != nil {
		return nil, err
	}

	clientPort, err := freePort()
	if err != nil {
		return nil, err
	}
	peerPort, err := freePort()
	if err != nil {
		return nil, err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(clientPort)
	if err := c.spawn(etcd, "--data-dir", filepath.Join(dir, "etcd"), "--listen-client-urls", etcdURL,
		"--advertise-client-urls", etcdURL, "--listen-peer-urls", "http://127.0.0.1:"+strconv.Itoa(peerPort),
		"--initial-advertise-peer-urls", "http://127.0.0.1:"+strconv.Itoa(peerPort),
		"--initial-cluster", "default=http://127.0.0.1:"+strconv.Itoa(peerPort), "--name", "default"); err != nil {
		return nil, err
	}
	if err := waitHTTP(http.DefaultClient, etcdURL+"/health", "", 30*time.Second); err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	certDir := filepath.Join(dir, "certs")
	if err := c.spawn(bin, "--etcd-servers="+etcdURL, "--secure-port="+strconv.Itoa(port), "--bind-address=127.0.0.1",
		"--cert-dir="+certDir, "--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(dir, "sa.key"),
		"--token-auth-file="+filepath.Join(dir, "tokens.csv"), "--authorization-mode=RBAC",
		"--service-cluster-ip-range=10.96.0.0/16"); err != nil {
		return nil, err
	}
	c.URL = "https://127.0.0.1:" + strconv.Itoa(port)
	c.CAFile = filepath.Join(certDir, "apiserver.crt")
	deadline := time.Now().Add(90 * time.Second)
	for {
		if pool, err := poolFrom(c.CAFile); err == nil {
			c.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
				TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}}}
			break
		}
		if time.Now().After(deadline) {
			return nil, errors.New("kube-apiserver wrote no serving certificate")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := waitHTTP(c.client, c.URL+"/readyz", Token("admin"), time.Until(deadline)); err != nil {
		return nil, fmt.Errorf("kube-apiserver: %w", err)
	}
	return c, nil
}

func poolFrom(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New("no certificate yet")
	}
	return pool, nil
}

func (c *Cluster) spawn(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &syncWriter{w: &log}, &syncWriter{w: &log}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", filepath.Base(name), err)
	}
	c.procs = append(c.procs, cmd)
	c.logs = append(c.logs, &log)
	return nil
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w.Len() > 1<<20 {
		return len(p), nil
	}
	return s.w.Write(p)
}

func (c *Cluster) logText() string {
	var b strings.Builder
	for _, l := range c.logs {
		s := l.String()
		if len(s) > 4000 {
			s = s[len(s)-4000:]
		}
		b.WriteString(s)
	}
	return b.String()
}

func waitHTTP(client *http.Client, url, token string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %v: %v", timeout, last)
}

// Kubeconfig writes a kubeconfig for user (see Token) into dir and returns
// its path.
func (c *Cluster) Kubeconfig(t testing.TB, dir, user string) string {
	t.Helper()
	p := filepath.Join(dir, strings.NewReplacer(":", "-").Replace(user)+".kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kubetest
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: u
  user:
    token: %s
contexts:
- name: kubetest
  context:
    cluster: kubetest
    user: u
current-context: kubetest
`, c.URL, c.CAFile, Token(user))
	if err := os.WriteFile(p, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Do calls the API as admin: method on path with obj (JSON-encoded, a
// merge patch for PATCH; nil for none) and returns the status code and
// body.
func (c *Cluster) Do(ctx context.Context, method, path string, obj any) (int, []byte, error) {
	var body io.Reader
	if obj != nil {
		b, err := json.Marshal(obj)
		if err != nil {
			return 0, nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.URL+path, body)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+Token("admin"))
	req.Header.Set("Content-Type", "application/json")
	if method == http.MethodPatch {
		req.Header.Set("Content-Type", "application/merge-patch+json")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	return resp.StatusCode, b, err
}

// MustCreate creates obj (a decoded manifest) at path as admin, accepting
// "already exists".
func (c *Cluster) MustCreate(t testing.TB, path string, obj any) {
	t.Helper()
	code, body, err := c.Do(context.Background(), http.MethodPost, path, obj)
	if err != nil {
		t.Fatal(err)
	}
	if code != http.StatusCreated && code != http.StatusOK && code != http.StatusConflict {
		t.Fatalf("kubetest: POST %s: %d %s", path, code, body)
	}
}

// paths of the kinds Apply creates: namespaced ones get the namespace.
var kindPaths = map[string]string{
	"Namespace":          "/api/v1/namespaces",
	"ConfigMap":          "/api/v1/namespaces/%s/configmaps",
	"ServiceAccount":     "/api/v1/namespaces/%s/serviceaccounts",
	"Role":               "/apis/rbac.authorization.k8s.io/v1/namespaces/%s/roles",
	"RoleBinding":        "/apis/rbac.authorization.k8s.io/v1/namespaces/%s/rolebindings",
	"ClusterRole":        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
	"ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
}

// Apply creates every object of a multi-document YAML manifest as admin
// (objects that already exist are left as they are).
func (c *Cluster) Apply(t testing.TB, manifest []byte) {
	t.Helper()
	for _, doc := range strings.Split("\n"+string(manifest), "\n---") {
		var obj struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		j, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatalf("kubetest: manifest: %v", err)
		}
		if string(j) == "null" {
			continue
		}
		if err := json.Unmarshal(j, &obj); err != nil {
			t.Fatalf("kubetest: manifest: %v", err)
		}
		p, ok := kindPaths[obj.Kind]
		if !ok {
			t.Fatalf("kubetest: Apply does not know kind %q", obj.Kind)
		}
		if strings.Contains(p, "%s") {
			p = fmt.Sprintf(p, obj.Metadata.Namespace)
		}
		c.MustCreate(t, p, json.RawMessage(j))
	}
}
