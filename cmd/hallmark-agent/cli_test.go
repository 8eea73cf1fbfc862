package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"flag"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/structpb"
)

// fakeWorkloadAPI serves one fixed X509SVIDResponse, like an agent whose
// caller has one SVID and one federated bundle.
type fakeWorkloadAPI struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	resp *workload.X509SVIDResponse
}

func (f *fakeWorkloadAPI) FetchJWTSVID(_ context.Context, req *workload.JWTSVIDRequest) (*workload.JWTSVIDResponse, error) {
	return &workload.JWTSVIDResponse{Svids: []*workload.JWTSVID{{SpiffeId: "spiffe://example.org/web", Svid: "header.payload.sig", Hint: "front"}}}, nil
}

func (f *fakeWorkloadAPI) FetchJWTBundles(_ *workload.JWTBundlesRequest, stream workload.SpiffeWorkloadAPI_FetchJWTBundlesServer) error {
	if err := stream.Send(&workload.JWTBundlesResponse{Bundles: map[string][]byte{"spiffe://example.org": []byte(`{"keys":[]}`)}}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

func (f *fakeWorkloadAPI) ValidateJWTSVID(_ context.Context, req *workload.ValidateJWTSVIDRequest) (*workload.ValidateJWTSVIDResponse, error) {
	claims, _ := structpb.NewStruct(map[string]any{"sub": "spiffe://example.org/web", "aud": []any{req.GetAudience()}})
	return &workload.ValidateJWTSVIDResponse{SpiffeId: "spiffe://example.org/web", Claims: claims}, nil
}

func (f *fakeWorkloadAPI) FetchX509SVID(_ *workload.X509SVIDRequest, stream workload.SpiffeWorkloadAPI_FetchX509SVIDServer) error {
	if err := stream.Send(f.resp); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

// selfSignedCA returns a CA certificate and its key.
func selfSignedCA(t *testing.T, td string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("spiffe://" + td)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: td}, NotBefore: time.Now().Add(-time.Minute),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, URIs: []*url.URL{u},
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

// startFakeWorkloadAPI serves a response with one SVID for
// spiffe://example.org/web and a bundle for partner.test, and a health
// service reporting status, on a socket in a fresh directory.
func startFakeWorkloadAPI(t *testing.T, status healthpb.HealthCheckResponse_ServingStatus) string {
	t.Helper()
	ca, caKey := selfSignedCA(t, "example.org")
	partner, _ := selfSignedCA(t, "partner.test")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("spiffe://example.org/web")
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: time.Now().Add(-time.Minute),
		NotAfter: time.Now().Add(time.Hour), URIs: []*url.URL{u}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	resp := &workload.X509SVIDResponse{
		Svids:            []*workload.X509SVID{{SpiffeId: "spiffe://example.org/web", X509Svid: leafDER, X509SvidKey: keyDER, Bundle: ca.Raw, Hint: "front"}},
		FederatedBundles: map[string][]byte{"spiffe://partner.test": partner.Raw},
	}
	sock := filepath.Join(t.TempDir(), "api.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	workload.RegisterSpiffeWorkloadAPIServer(s, &fakeWorkloadAPI{resp: resp})
	h := health.NewServer()
	h.SetServingStatus("", status)
	healthpb.RegisterHealthServer(s, h)
	go s.Serve(l) //nolint:errcheck // ends with Stop
	t.Cleanup(s.Stop)
	return sock
}

func runAgentCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	rc := run(args, &out, &errb)
	return rc, out.String(), errb.String()
}

// TestFetchX509JSON: -output json prints the Workload API response in
// SPIRE's shape (protojson, proto names, every field).
func TestFetchX509JSON(t *testing.T) {
	sock := startFakeWorkloadAPI(t, healthpb.HealthCheckResponse_SERVING)
	rc, out, errOut := runAgentCLI("api", "fetch", "x509", "-output", "json", "-socketPath", sock)
	if rc != 0 {
		t.Fatalf("exit %d: %s", rc, errOut)
	}
	var got struct {
		Svids []struct {
			SpiffeID    string `json:"spiffe_id"`
			X509SVID    []byte `json:"x509_svid"`
			X509SVIDKey []byte `json:"x509_svid_key"`
			Bundle      []byte `json:"bundle"`
			Hint        string `json:"hint"`
		} `json:"svids"`
		CRL              []string          `json:"crl"`
		FederatedBundles map[string][]byte `json:"federated_bundles"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if len(got.Svids) != 1 || got.Svids[0].SpiffeID != "spiffe://example.org/web" || got.Svids[0].Hint != "front" ||
		len(got.Svids[0].X509SVID) == 0 || len(got.Svids[0].X509SVIDKey) == 0 || len(got.Svids[0].Bundle) == 0 ||
		got.CRL == nil || len(got.FederatedBundles["spiffe://partner.test"]) == 0 {
		t.Fatalf("JSON:\n%s", out)
	}
	if rc, _, errOut := runAgentCLI("api", "fetch", "-output", "json", "-write", t.TempDir(), "-socketPath", sock); rc != 1 || !strings.Contains(errOut, "-write is only available") {
		t.Fatalf("-write with json: exit %d %s", rc, errOut)
	}
}

// TestFetchX509WriteFederated: -write also writes each federated bundle as
// federated_bundle.N.M.pem (before: only svid, key and bundle), -silent
// keeps stdout empty, and bare `api fetch` with a relative -socketPath
// works (before: "unknown command", and a relative path was parsed as a
// host name).
func TestFetchX509WriteFederated(t *testing.T) {
	sock := startFakeWorkloadAPI(t, healthpb.HealthCheckResponse_SERVING)
	t.Chdir(filepath.Dir(sock))
	dir := filepath.Join(t.TempDir(), "out")
	rc, out, errOut := runAgentCLI("api", "fetch", "-silent", "-write", dir, "-socketPath", "api.sock")
	if rc != 0 || out != "" {
		t.Fatalf("exit %d, stdout %q, stderr %s", rc, out, errOut)
	}
	for name, mode := range map[string]os.FileMode{"svid.0.pem": 0o644, "svid.0.key": 0o600, "bundle.0.pem": 0o644, "federated_bundle.0.0.pem": 0o644} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s mode %v, want %v", name, st.Mode().Perm(), mode)
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "federated_bundle.0.0.pem"))
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("federated_bundle.0.0.pem holds no PEM")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil || cert.URIs[0].String() != "spiffe://partner.test" {
		t.Fatalf("federated bundle: %v %v", err, cert.URIs)
	}
}

// TestHealthcheckShallow: -shallow passes for an agent that answers but is
// not ready; without it the check fails.
func TestHealthcheckShallow(t *testing.T) {
	sock := startFakeWorkloadAPI(t, healthpb.HealthCheckResponse_NOT_SERVING)
	if rc, _, errOut := runAgentCLI("healthcheck", "-socketPath", sock); rc != 1 || !strings.Contains(errOut, "NOT_SERVING") {
		t.Fatalf("deep check: exit %d %s", rc, errOut)
	}
	if rc, out, errOut := runAgentCLI("healthcheck", "-shallow", "-socketPath", sock); rc != 0 || !strings.Contains(out, "Agent is healthy") {
		t.Fatalf("shallow check: exit %d %s%s", rc, out, errOut)
	}
	missing := filepath.Join(t.TempDir(), "none.sock")
	if rc, _, _ := runAgentCLI("healthcheck", "-shallow", "-socketPath", missing); rc != 1 {
		t.Fatal("shallow check passed without an agent")
	}
}

// writeAgentConfig writes an agent configuration with a trust bundle
// file and returns its path.
func writeAgentConfig(t *testing.T, agentBlock string) string {
	t.Helper()
	dir := t.TempDir()
	ca, _ := selfSignedCA(t, "example.org")
	bundle := filepath.Join(dir, "bundle.pem")
	if err := os.WriteFile(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := `agent {
  trust_domain = "example.org"
  server_address = "127.0.0.1:8081"
  trust_bundle_path = "` + bundle + `"
  data_dir = "` + filepath.Join(dir, "data") + `"
` + agentBlock + `
}
node_attestor "join_token" {}
`
	path := filepath.Join(dir, "agent.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestAgentValidateAndRunFlags: `validate -config` and SPIRE's run flags
// that map onto the configuration, -trustBundleUrl included (checked as
// trust_bundle_url is).
func TestAgentValidateAndRunFlags(t *testing.T) {
	t.Setenv("HALLMARK_TEST_LEVEL", "debug")
	path := writeAgentConfig(t, `  log_level = "${HALLMARK_TEST_LEVEL}"`)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		wantErr string
		check   func(t *testing.T, f configFlags)
	}{
		// A restarted agent runs on its saved SVID: no token needed.
		{name: "no token", args: []string{"-expandEnv"}},
		{name: "env not expanded", args: []string{"-joinToken", "0123456789abcdef0123456789abcdef"}, wantErr: "Variables not allowed"},
		{name: "token file, env, level, data dir", args: []string{"-expandEnv", "-joinTokenFile", tokenFile, "-logLevel", "warn", "-dataDir", "/var/lib/x"},
			check: func(t *testing.T, f configFlags) {
				cfg, err := f.load()
				if err != nil {
					t.Fatal(err)
				}
				if cfg.JoinToken != "0123456789abcdef0123456789abcdef" || cfg.LogLevel != "warn" || cfg.DataDir != "/var/lib/x" {
					t.Errorf("config %+v", cfg)
				}
			}},
		{name: "both tokens", args: []string{"-joinToken", "x", "-joinTokenFile", tokenFile}, wantErr: "mutually exclusive"},
		{name: "bad level", args: []string{"-expandEnv", "-joinTokenFile", tokenFile, "-logLevel", "loud"}, wantErr: "-logLevel"},
		{name: "trust bundle URL", args: []string{"-expandEnv", "-trustBundleUrl", "https://example.org/bundle", "-trustBundleFormat", "spiffe"},
			check: func(t *testing.T, f configFlags) {
				cfg, err := f.load()
				if err != nil {
					t.Fatal(err)
				}
				if cfg.TrustBundleURL != "https://example.org/bundle" || cfg.TrustBundlePath != "" || cfg.TrustBundleFormat != "spiffe" {
					t.Errorf("config %+v", cfg)
				}
			}},
		{name: "trust bundle path", args: []string{"-expandEnv", "-trustBundle", filepath.Join(filepath.Dir(path), "bundle.pem")},
			check: func(t *testing.T, f configFlags) {
				cfg, err := f.load()
				if err != nil {
					t.Fatal(err)
				}
				if cfg.TrustBundlePath != filepath.Join(filepath.Dir(path), "bundle.pem") || cfg.TrustBundleURL != "" {
					t.Errorf("config %+v", cfg)
				}
			}},
		{name: "plain http trust bundle URL", args: []string{"-expandEnv", "-trustBundleUrl", "http://example.org/bundle"}, wantErr: "-trustBundleUrl"},
		{name: "both bundle sources", args: []string{"-expandEnv", "-trustBundleUrl", "https://example.org/b", "-trustBundle", "/x"}, wantErr: "mutually exclusive"},
		{name: "bad bundle format", args: []string{"-expandEnv", "-trustBundleFormat", "der"}, wantErr: `-trustBundleFormat "der"`},
		{name: "missing bundle file", args: []string{"-expandEnv", "-trustBundle", "/nonexistent/bundle.pem"}, wantErr: "no such file"},
		{name: "bundle file in the wrong format", args: []string{"-expandEnv", "-trustBundleFormat", "spiffe"}, wantErr: "bootstrap: trust_bundle_path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc, out, errOut := runAgentCLI(append([]string{"validate", "-config", path}, tt.args...)...)
			if tt.wantErr != "" {
				if rc != 1 || !strings.Contains(errOut, tt.wantErr) {
					t.Fatalf("exit %d, stderr %q, want %q", rc, errOut, tt.wantErr)
				}
				return
			}
			if rc != 0 || !strings.Contains(out, "is valid") {
				t.Fatalf("exit %d: %s%s", rc, out, errOut)
			}
			if tt.check != nil {
				fs := newTestFlagSet()
				f := defineConfigFlags(fs)
				if err := fs.Parse(append([]string{"-config", path}, tt.args...)); err != nil {
					t.Fatal(err)
				}
				tt.check(t, f)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(path), "data")); err == nil {
		t.Error("validate created data_dir")
	}
}

// TestJWTJSON: api fetch jwt and api validate jwt -output json print the
// Workload API responses as SPIRE does (fetch: an array of the SVID and
// bundle responses).
func TestJWTJSON(t *testing.T) {
	sock := startFakeWorkloadAPI(t, healthpb.HealthCheckResponse_SERVING)
	rc, out, errOut := runAgentCLI("api", "fetch", "jwt", "-audience", "a", "-output", "json", "-socketPath", sock)
	if rc != 0 {
		t.Fatalf("exit %d: %s", rc, errOut)
	}
	var fetched []map[string]any
	if err := json.Unmarshal([]byte(out), &fetched); err != nil || len(fetched) != 2 {
		t.Fatalf("%v:\n%s", err, out)
	}
	svids, _ := fetched[0]["svids"].([]any)
	if len(svids) != 1 || svids[0].(map[string]any)["svid"] != "header.payload.sig" || fetched[1]["bundles"] == nil {
		t.Fatalf("fetch jwt JSON:\n%s", out)
	}
	rc, out, errOut = runAgentCLI("api", "validate", "jwt", "-audience", "a", "-svid", "x.y.z", "-output", "json", "-socketPath", sock)
	var v struct {
		SpiffeID string         `json:"spiffe_id"`
		Claims   map[string]any `json:"claims"`
	}
	if rc != 0 || json.Unmarshal([]byte(out), &v) != nil || v.SpiffeID != "spiffe://example.org/web" || v.Claims["sub"] == nil {
		t.Fatalf("validate jwt JSON: exit %d %s%s", rc, out, errOut)
	}
}

func TestVersion(t *testing.T) {
	rc, out, _ := runAgentCLI("-version")
	if rc != 0 || strings.TrimSpace(out) == "" || strings.Contains(out, "\n\n") {
		t.Fatalf("exit %d, %q", rc, out)
	}
}

func newTestFlagSet() *flag.FlagSet { return flag.NewFlagSet("test", flag.ContinueOnError) }

// TestRunErrorPrintedOnce: a start-up failure logged to stderr is not
// printed a second time as "Error: ...".
func TestRunErrorPrintedOnce(t *testing.T) {
	path := writeAgentConfig(t, "")
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	rc, _, errOut := runAgentCLI("run", "-config", path, "-joinToken", "0123456789abcdef0123456789abcdef", "-dataDir", filepath.Join(file, "data"))
	if rc != 1 || !strings.Contains(errOut, "Agent failed to start") {
		t.Fatalf("exit %d, stderr %q; want exit 1 and the failure logged", rc, errOut)
	}
	if n := strings.Count(errOut, "not a directory"); n != 1 {
		t.Fatalf("the error is printed %d times, want once:\n%s", n, errOut)
	}
}
