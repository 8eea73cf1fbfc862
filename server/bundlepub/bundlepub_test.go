package bundlepub_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/attestors/awsiam/awsfake"
	"github.com/hallmarkid/hallmark/internal/hclconf"
	"github.com/hallmarkid/hallmark/server/bundlepub"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

func ca(t testing.TB, notBefore time.Time) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, NotBefore: notBefore,
		NotAfter: notBefore.Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestEncodeDeterministic: servers holding the same authorities in any
// order (HA) produce the same bytes, so none of them rewrites a target
// another has just written.
func TestEncodeDeterministic(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	a, b, c := ca(t, now), ca(t, now.Add(time.Minute)), ca(t, now)
	for _, f := range []bundlepub.Format{bundlepub.FormatPEM, bundlepub.FormatSPIFFE} {
		x, err := bundlepub.Encode(td, []*x509.Certificate{a, b, c}, f)
		if err != nil {
			t.Fatal(err)
		}
		y, err := bundlepub.Encode(td, []*x509.Certificate{b, c, a, c}, f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(x, y) {
			t.Errorf("%s: order changes the encoding", f)
		}
	}
	js, err := bundlepub.Encode(td, []*x509.Certificate{a, b}, bundlepub.FormatSPIFFE)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := spiffebundle.Parse(td, js)
	if err != nil || len(sb.X509Authorities()) != 2 {
		t.Fatalf("SPIFFE bundle: %v", err)
	}
	if _, has := sb.SequenceNumber(); has {
		t.Error("the SPIFFE bundle carries a sequence number: servers would disagree on it")
	}
	if _, err := bundlepub.Encode(td, nil, bundlepub.FormatPEM); err == nil {
		t.Error("an empty bundle was encoded")
	}
}

func TestFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "bundle.pem")
	f := &bundlepub.File{Path: p}
	ctx := context.Background()
	for i, step := range []struct {
		content   string
		wantWrote bool
	}{{"one", true}, {"one", false}, {"two", true}} {
		wrote, err := f.Publish(ctx, []byte(step.content))
		if err != nil || wrote != step.wantWrote {
			t.Fatalf("step %d: wrote %v, %v; want %v", i, wrote, err, step.wantWrote)
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != step.content {
			t.Fatalf("step %d: file holds %q, %v", i, got, err)
		}
		st, _ := os.Stat(p)
		if st.Mode().Perm() != 0o644 {
			t.Fatalf("step %d: mode %v, want 0644", i, st.Mode())
		}
	}
	// A wrong mode is repaired even when the content is right.
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if wrote, err := f.Publish(ctx, []byte("two")); err != nil || !wrote {
		t.Fatalf("mode repair: wrote %v, %v", wrote, err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("left temporary files: %v", ents)
	}
	if _, err := (&bundlepub.File{Path: filepath.Join(dir, "missing", "b.pem")}).Publish(ctx, []byte("x")); err == nil ||
		!strings.HasPrefix(err.Error(), "bundlepub: file: ") {
		t.Fatalf("missing directory: err = %v", err)
	}
	for _, mode := range []os.FileMode{0o777 | os.ModeSticky, 0o775, 0o757} {
		open := filepath.Join(t.TempDir(), "open")
		if err := os.Mkdir(open, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(open, mode); err != nil {
			t.Fatal(err)
		}
		_, err := (&bundlepub.File{Path: filepath.Join(open, "b.pem")}).Publish(ctx, []byte("x"))
		if err == nil || !strings.Contains(err.Error(), "writable by group or others") {
			t.Fatalf("directory mode %v: err = %v", mode, err)
		}
		if _, err := os.Stat(filepath.Join(open, "b.pem")); err == nil {
			t.Fatalf("directory mode %v: the bundle was written", mode)
		}
	}
}

// TestFileReadersSeeWholeBundles reads the file while it is rewritten: a
// reader sees one bundle or the other, never a mix or a short file.
func TestFileReadersSeeWholeBundles(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bundle.pem")
	f := &bundlepub.File{Path: p}
	a, b := bytes.Repeat([]byte("a"), 64<<10), bytes.Repeat([]byte("b"), 64<<10)
	if _, err := f.Publish(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; i < 200; i++ {
			c := a
			if i%2 == 0 {
				c = b
			}
			if _, err := f.Publish(context.Background(), c); err != nil {
				t.Error(err)
				break
			}
		}
		close(done)
	})
	reads := 0
	for {
		select {
		case <-done:
			wg.Wait()
			t.Logf("%d reads", reads)
			return
		default:
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, a) && !bytes.Equal(got, b) {
			t.Fatalf("read %d bytes that are neither bundle", len(got))
		}
		reads++
	}
}

func block(t *testing.T, kind, body string) hclconf.Block {
	t.Helper()
	f, diags := hclsyntax.ParseConfig([]byte(body), "server.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return hclconf.Block{Type: "bundle_publisher", Kind: kind, Body: f.Body, Range: hcl.Range{Filename: "server.hcl", Start: hcl.InitialPos}}
}

func TestOutputsHCL(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKID")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	t.Setenv("AWS_REGION", "")
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, []byte(`apiVersion: v1
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, kind, body string
		want             string // the target's String
		wantErr          string
	}{
		{name: "file", kind: "file", body: `path = "/tmp/b.pem"`, want: "file /tmp/b.pem"},
		{name: "file spiffe", kind: "file", body: "path = \"/tmp/b.json\"\nformat = \"spiffe\"", want: "file /tmp/b.json"},
		{name: "file without path", kind: "file", body: ``, wantErr: `The argument "path" is required`},
		{name: "file bad format", kind: "file", body: "path = \"/b\"\nformat = \"der\"", wantErr: `format "der" is not`},
		{name: "file unknown key", kind: "file", body: "path = \"/b\"\nmode = \"0600\"", wantErr: `Unsupported argument`},
		{name: "configmap", kind: "k8s_configmap", body: "kube_config_file_path = \"" + kc + "\"",
			want: "k8s_configmap hallmark/hallmark-bundle key bundle.pem"},
		{name: "configmap named", kind: "k8s_configmap",
			body: "namespace = \"spire\"\nconfig_map = \"spire-bundle\"\nconfig_map_key = \"bundle.crt\"\nkube_config_file_path = \"" + kc + "\"",
			want: "k8s_configmap spire/spire-bundle key bundle.crt"},
		{name: "configmap not in a pod", kind: "k8s_configmap", body: ``, wantErr: "KUBERNETES_SERVICE_HOST"},
		{name: "configmap bad namespace", kind: "k8s_configmap", body: "namespace = \"Bad_NS\"\nkube_config_file_path = \"" + kc + "\"",
			wantErr: "not a Kubernetes namespace name"},
		{name: "configmap bad key", kind: "k8s_configmap", body: "config_map_key = \"a/b\"\nkube_config_file_path = \"" + kc + "\"",
			wantErr: "not a valid ConfigMap key"},
		{name: "ssm", kind: "aws_ssm", body: "parameter_name = \"/hallmark/trust-bundle\"\nregion = \"eu-west-1\"", want: "aws_ssm /hallmark/trust-bundle"},
		{name: "ssm no region", kind: "aws_ssm", body: `parameter_name = "/p"`, wantErr: "no AWS region"},
		{name: "ssm bad type", kind: "aws_ssm", body: "parameter_name = \"/p\"\nregion = \"eu-west-1\"\nparameter_type = \"StringList\"",
			wantErr: `parameter_type "StringList"`},
		{name: "ssm bad tier", kind: "aws_ssm", body: "parameter_name = \"/p\"\nregion = \"eu-west-1\"\ntier = \"Gold\"", wantErr: `tier "Gold"`},
		{name: "ssm http endpoint", kind: "aws_ssm", body: "parameter_name = \"/p\"\nregion = \"eu-west-1\"\nendpoint = \"http://ssm.example.org\"",
			wantErr: "must be https"},
		{name: "ssm loopback endpoint", kind: "aws_ssm", body: "parameter_name = \"/p\"\nregion = \"eu-west-1\"\nendpoint = \"http://127.0.0.1:9\"",
			want: "aws_ssm /p"},
		{name: "ssm bad name", kind: "aws_ssm", body: "parameter_name = \"a b\"\nregion = \"eu-west-1\"", wantErr: "not an SSM parameter name"},
		{name: "unknown kind", kind: "s3", body: ``, wantErr: "unknown kind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("KUBERNETES_SERVICE_HOST", "")
			outs, err := bundlepub.Outputs(context.Background(), []hclconf.Block{block(t, tt.kind, tt.body)})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "bundlepub: server.hcl:1") {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || len(outs) != 1 || outs[0].Target.String() != tt.want {
				t.Fatalf("Outputs = %v, %v; want %s", outs, err, tt.want)
			}
		})
	}
}

// TestSSM publishes through the real SDK to the strict fake: SigV4 for
// ssm in the region, GetParameter before PutParameter, Overwrite, the
// parameter's type, and no write for an unchanged value.
func TestSSM(t *testing.T) {
	creds := awsfake.Credentials{AccessKeyID: "AKIDSSM", SecretAccessKey: "s3cr3t"}
	fake := awsfake.NewSSM(t, "eu-west-1", creds, map[string]string{"/hallmark/trust-bundle": "String", "/secure": "SecureString"})
	t.Setenv("AWS_ACCESS_KEY_ID", creds.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", creds.SecretAccessKey)
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	target := func(name, region, extra string) bundlepub.Target {
		outs, err := bundlepub.Outputs(context.Background(), []hclconf.Block{block(t, "aws_ssm",
			"parameter_name = \""+name+"\"\nregion = \""+region+"\"\nendpoint = \""+fake.URL+"\"\n"+extra)})
		if err != nil {
			t.Fatal(err)
		}
		return outs[0].Target
	}
	ctx := context.Background()
	tg := target("/hallmark/trust-bundle", "eu-west-1", "")
	for i, step := range []struct {
		content   string
		wantWrote bool
	}{{"one", true}, {"one", false}, {"two", true}, {"two", false}} {
		wrote, err := tg.Publish(ctx, []byte(step.content))
		if err != nil || wrote != step.wantWrote {
			t.Fatalf("step %d: wrote %v, %v; want %v (fake errors %v)", i, wrote, err, step.wantWrote, fake.Errors())
		}
		if v, _ := fake.Value("/hallmark/trust-bundle"); v != step.content {
			t.Fatalf("step %d: parameter holds %q", i, v)
		}
	}
	if n := len(fake.History("/hallmark/trust-bundle")); n != 2 {
		t.Fatalf("%d writes, want 2", n)
	}
	if wrote, err := target("/secure", "eu-west-1", `parameter_type = "SecureString"`).Publish(ctx, []byte("s")); err != nil || !wrote {
		t.Fatalf("SecureString: %v, %v", wrote, err)
	}
	tests := []struct {
		name    string
		target  bundlepub.Target
		content string
		wantErr string
	}{
		{name: "other parameter", target: target("/other", "eu-west-1", ""), content: "x", wantErr: "AccessDeniedException"},
		{name: "wrong region", target: target("/hallmark/trust-bundle", "us-east-1", ""), content: "x", wantErr: "credential scope"},
		{name: "wrong type", target: target("/hallmark/trust-bundle", "eu-west-1", `parameter_type = "SecureString"`), content: "x",
			wantErr: "ValidationException"},
		{name: "too large for Standard", target: target("/hallmark/trust-bundle", "eu-west-1", ""), content: strings.Repeat("x", 4097),
			wantErr: "more than a Standard parameter holds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.target.Publish(ctx, []byte(tt.content))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
	if _, err := target("/hallmark/trust-bundle", "eu-west-1", "").Publish(ctx, []byte("x")); err == nil ||
		!strings.Contains(err.Error(), "SignatureDoesNotMatch") {
		t.Fatalf("bad signature: err = %v", err)
	}
}
