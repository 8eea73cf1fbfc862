// Package tpmtest manufactures swtpm instances for tests: a test CA, a
// TPM state with EK certificates signed by that CA (manufactured once per
// test binary and name), and per-test copies of that state served by a
// swtpm process that is stopped when the test ends.
//
// Under CI=true a missing swtpm is a test failure; otherwise tests skip
// with a message naming the Debian packages.
//
// It is for tests and the e2e harness only and must not be imported by
// production code.
package tpmtest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Packages is the Debian packages providing the tools this helper runs.
const Packages = "swtpm swtpm-tools tpm2-tools"

// Require skips tb (or fails it under CI=true) when swtpm is missing.
func Require(tb testing.TB) {
	tb.Helper()
	var missing []string
	for _, bin := range []string{"swtpm", "swtpm_setup", "swtpm_localca", "swtpm_ioctl"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("tpmtest: %s not found; install the Debian packages: apt-get install -y %s", strings.Join(missing, ", "), Packages)
	if os.Getenv("CI") == "true" {
		tb.Fatal(msg)
	}
	tb.Skip(msg)
}

// CA is a test certificate authority that signs EK certificates.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	Key     *ecdsa.PrivateKey
	keyPEM  []byte
}

// NewCA creates a CA named cn, valid for a year from an hour ago.
func NewCA(cn string) (*CA, error) {
	return newCA(cn, nil)
}

// newCA creates a CA named cn, self-signed or signed by parent.
func newCA(cn string, parent *CA) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"Hallmark test TPM manufacturer"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	issuer, signer := tmpl, key
	if parent != nil {
		issuer, signer = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, &key.PublicKey, signer)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &CA{
		Cert:    cert,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Key:     key,
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}),
	}, nil
}

// Intermediate returns a CA named cn whose certificate ca signs, valid
// for a year from an hour ago.
func (ca *CA) Intermediate(cn string) (*CA, error) {
	return newCA(cn, ca)
}

// CRL returns a PEM CRL signed by ca that revokes serials, with the given
// thisUpdate and nextUpdate (a zero nextUpdate is left out).
func (ca *CA) CRL(tb testing.TB, number int64, thisUpdate, nextUpdate time.Time, serials ...*big.Int) []byte {
	tb.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(number), ThisUpdate: thisUpdate, NextUpdate: nextUpdate}
	for _, s := range serials {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: thisUpdate})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Key)
	if err != nil {
		tb.Fatalf("tpmtest: CRL: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

// WriteDir writes the CA certificate as ca.pem into a new directory under
// tb.TempDir and returns the directory (an ek_ca_dir for the verifier).
func (ca *CA) WriteDir(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), ca.CertPEM, 0o644); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// Template is a manufactured TPM state: an RSA-2048 EK (0x81010001, cert
// at NV 0x1c00002), an ECC P-384 EK (0x81010016, cert at NV 0x1c00016)
// and a platform certificate, signed by CA. Start serves copies of it.
type Template struct {
	Dir string // the state directory
	CA  *CA
}

// Manufacture runs swtpm_setup with a private configuration pointing at
// ca; work is a scratch directory that receives the state in work/state.
func Manufacture(work string, ca *CA) (*Template, error) {
	caDir := filepath.Join(work, "ca")
	state := filepath.Join(work, "state")
	for _, d := range []string{caDir, state} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	files := map[string][]byte{
		filepath.Join(caDir, "signkey.pem"):    ca.keyPEM,
		filepath.Join(caDir, "issuercert.pem"): ca.CertPEM,
		filepath.Join(caDir, "certserial"):     []byte("1\n"),
		filepath.Join(work, "localca.options"): []byte("--platform-manufacturer Hallmark\n--platform-version 2.1\n--platform-model swtpm-test\n"),
		filepath.Join(work, "localca.conf"): fmt.Appendf(nil, "statedir = %s\nsigningkey = %s\nissuercert = %s\ncertserial = %s\n",
			caDir, filepath.Join(caDir, "signkey.pem"), filepath.Join(caDir, "issuercert.pem"), filepath.Join(caDir, "certserial")),
		filepath.Join(work, "setup.conf"): fmt.Appendf(nil, "create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = %s\ncreate_certs_tool_options = %s\nactive_pcr_banks = sha256,sha1\n",
			filepath.Join(work, "localca.conf"), filepath.Join(work, "localca.options")),
	}
	for p, b := range files {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			return nil, err
		}
	}
	cmd := exec.Command("swtpm_setup", "--tpm2", "--tpmstate", state, "--create-ek-cert", "--create-platform-cert",
		"--config", filepath.Join(work, "setup.conf"), "--overwrite")
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+work, "HOME="+work)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("tpmtest: swtpm_setup: %w\n%s", err, out)
	}
	return &Template{Dir: state, CA: ca}, nil
}

var shared struct {
	mu        sync.Mutex
	root      string
	cas       map[string]*CA
	templates map[string]*Template
}

func sharedRoot() (string, error) {
	if shared.root == "" {
		d, err := os.MkdirTemp("", "hallmark-tpmtest-")
		if err != nil {
			return "", err
		}
		shared.root = d
	}
	return shared.root, nil
}

// SharedCA returns the CA named name, created once per process.
func SharedCA(tb testing.TB, name string) *CA {
	tb.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if ca := shared.cas[name]; ca != nil {
		return ca
	}
	ca, err := NewCA("Hallmark Test EK CA " + name)
	if err != nil {
		tb.Fatalf("tpmtest: CA: %v", err)
	}
	if shared.cas == nil {
		shared.cas = map[string]*CA{}
	}
	shared.cas[name] = ca
	return ca
}

// Shared returns the template named name, manufactured once per process
// with ca. Different names give different EKs. Call Cleanup from TestMain
// to remove the templates when the tests are done.
func Shared(tb testing.TB, name string, ca *CA) *Template {
	tb.Helper()
	Require(tb)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if t := shared.templates[name]; t != nil {
		if t.CA != ca {
			tb.Fatalf("tpmtest: template %q was manufactured with another CA", name)
		}
		return t
	}
	root, err := sharedRoot()
	if err != nil {
		tb.Fatal(err)
	}
	t, err := Manufacture(filepath.Join(root, name), ca)
	if err != nil {
		tb.Fatal(err)
	}
	if shared.templates == nil {
		shared.templates = map[string]*Template{}
	}
	shared.templates[name] = t
	return t
}

// Cleanup removes the shared templates; call it after m.Run in TestMain.
func Cleanup() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.root != "" {
		os.RemoveAll(shared.root)
	}
	shared.root, shared.templates = "", nil
}

// Instance is a running swtpm serving a copy of a template's state.
type Instance struct {
	Dir     string // the instance's directory
	Socket  string // the TPM data socket
	Ctrl    string // the control socket
	state   string
	stopped bool
}

// Start copies the template state into tb.TempDir and starts swtpm on it;
// the instance is stopped when tb ends.
func (tmpl *Template) Start(tb testing.TB) *Instance {
	tb.Helper()
	Require(tb)
	// Unix socket paths are limited to 108 bytes: keep them short.
	dir, err := os.MkdirTemp("", "swtpm-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	in := &Instance{Dir: dir, Socket: filepath.Join(dir, "tpm.sock"), Ctrl: filepath.Join(dir, "tpm.sock.ctrl"), state: filepath.Join(dir, "state")}
	if err := copyDir(tmpl.Dir, in.state); err != nil {
		tb.Fatal(err)
	}
	if err := in.start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(in.Stop)
	return in
}

func (in *Instance) start() error {
	cmd := exec.Command("swtpm", "socket", "--tpm2",
		"--server", "type=unixio,path="+in.Socket,
		"--ctrl", "type=unixio,path="+in.Ctrl,
		"--tpmstate", "dir="+in.state,
		"--flags", "not-need-init,startup-clear",
		"--pid", "file="+filepath.Join(in.Dir, "pid"),
		"--daemon")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("tpmtest: swtpm: %w\n%s", err, out)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("unix", in.Socket); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("tpmtest: swtpm socket %s did not appear", in.Socket)
}

// Device is the device specification for tpm.Open.
func (in *Instance) Device() string { return "unix:" + in.Socket }

// Stop stops swtpm; it is safe to call more than once.
func (in *Instance) Stop() {
	if in.stopped {
		return
	}
	in.stopped = true
	if err := exec.Command("swtpm_ioctl", "--unix", in.Ctrl, "-s").Run(); err != nil {
		// Fall back to the pid file.
		if b, err := os.ReadFile(filepath.Join(in.Dir, "pid")); err == nil {
			var pid int
			if _, err := fmt.Sscan(string(bytes.TrimSpace(b)), &pid); err == nil && pid > 0 {
				if p, err := os.FindProcess(pid); err == nil {
					_ = p.Kill()
				}
			}
		}
	}
}

// Reboot simulates a power cycle: swtpm re-initialises and PCRs reset.
// No connection to the data socket may be open meanwhile.
func (in *Instance) Reboot(tb testing.TB) {
	tb.Helper()
	if out, err := exec.Command("swtpm_ioctl", "--unix", in.Ctrl, "-i").CombinedOutput(); err != nil {
		tb.Fatalf("tpmtest: swtpm_ioctl -i: %v\n%s", err, out)
	}
	c, err := net.Dial("unix", in.Socket)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	// TPM2_Startup(TPM_SU_CLEAR).
	if _, err := c.Write([]byte{0x80, 0x01, 0, 0, 0, 0x0c, 0, 0, 0x01, 0x44, 0, 0}); err != nil {
		tb.Fatal(err)
	}
	rsp := make([]byte, 10)
	if _, err := c.Read(rsp); err != nil {
		tb.Fatal(err)
	}
	if !bytes.Equal(rsp[6:10], []byte{0, 0, 0, 0}) {
		tb.Fatalf("tpmtest: TPM2_Startup: response code %x", rsp[6:10])
	}
}

func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o600)
	})
}
