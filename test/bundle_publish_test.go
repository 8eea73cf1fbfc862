package test

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/attestors/awsiam/awsfake"
	"github.com/hallmarkid/hallmark/test/testenv"
)

// bundleKey names a set of authorities: their DER, sorted, hex-joined.
func bundleKey(certs []*x509.Certificate) string {
	var ks []string
	for _, c := range certs {
		ks = append(ks, hex.EncodeToString(c.Raw))
	}
	slices.Sort(ks)
	return strings.Join(slices.Compact(ks), ",")
}

func pemKey(data []byte) string {
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return ""
		}
		certs = append(certs, c)
	}
	return bundleKey(certs)
}

func spiffeKey(data []byte) string {
	b, err := spiffebundle.Parse(spiffeid.RequireTrustDomainFromString(testenv.TrustDomain), data)
	if err != nil {
		return ""
	}
	return bundleKey(b.X509Authorities())
}

// bundleWatch polls the server's bundle and each published form every
// 50 ms and records when each form first showed each bundle.
type bundleWatch struct {
	mu    sync.Mutex
	first map[string]map[string]time.Time // source -> bundle key -> first seen
	order []string                        // bundle keys as the server showed them
}

func adminBundle(t *testing.T, ctx context.Context, admin apiv1.AdminClient) func() string {
	return func() string {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		b, err := admin.GetBundle(ctx, &apiv1.GetBundleRequest{})
		if err != nil {
			return ""
		}
		var certs []*x509.Certificate
		for _, der := range b.GetX509Authorities() {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				t.Errorf("server bundle: %v", err)
				return ""
			}
			certs = append(certs, c)
		}
		return bundleKey(certs)
	}
}

// watchBundles polls the servers' bundles (sources named "server...")
// and the published forms.
func watchBundles(t *testing.T, ctx context.Context, admins []apiv1.AdminClient, sources map[string]func() string) *bundleWatch {
	w := &bundleWatch{first: map[string]map[string]time.Time{}}
	all := map[string]func() string{}
	for i, a := range admins {
		all[fmt.Sprintf("server%d", i)] = adminBundle(t, ctx, a)
	}
	for k, f := range sources {
		all[k] = f
	}
	go func() {
		for ctx.Err() == nil {
			now := time.Now()
			for name, f := range all {
				k := f()
				if k == "" {
					continue
				}
				w.mu.Lock()
				if w.first[name] == nil {
					w.first[name] = map[string]time.Time{}
				}
				if _, seen := w.first[name][k]; !seen {
					w.first[name][k] = now
					if strings.HasPrefix(name, "server") && !slices.Contains(w.order, k) {
						w.order = append(w.order, k)
					}
				}
				w.mu.Unlock()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return w
}

func (w *bundleWatch) serverBundles() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.order)
}

// check fails unless every bundle the servers showed reached every source
// within limit of the first server showing it. With several servers only
// the bundles all of them showed count: one a server held alone for a
// moment (it prepared an authority as another did, and adopted the
// other's) need not be published.
func (w *bundleWatch) check(t *testing.T, limit time.Duration) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, k := range w.order {
		agreed := true
		for name, seen := range w.first {
			if _, ok := seen[k]; strings.HasPrefix(name, "server") && !ok {
				agreed = false
			}
		}
		if !agreed {
			t.Logf("bundle #%d was shown by one server only", i)
			continue
		}
		var at time.Time // the first server to show it
		for name, seen := range w.first {
			if t, ok := seen[k]; ok && strings.HasPrefix(name, "server") && (at.IsZero() || t.Before(at)) {
				at = t
			}
		}
		for name, seen := range w.first {
			if strings.HasPrefix(name, "server") {
				continue
			}
			got, ok := seen[k]
			switch {
			case !ok:
				t.Errorf("bundle #%d (%d authorities, shown by the server at %s) never reached %s", i, strings.Count(k, ",")+1, at.Format("15:04:05.000"), name)
			case got.Sub(at) > limit:
				t.Errorf("bundle #%d reached %s %v after the server showed it, want ≤ %v", i, name, got.Sub(at), limit)
			default:
				t.Logf("bundle #%d (%d authorities) reached %s after %v", i, strings.Count(k, ",")+1, name, max(got.Sub(at), 0))
			}
		}
	}
}

// TestBootstrapAfterCARotation is issue #13's bug: the bootstrap bundle
// (a file, the SSM parameter Fargate reads, the ConfigMap) was never
// updated, so after the first CA rotation a new agent could not attest
// ("x509: certificate signed by unknown authority", retried forever). The
// server now publishes its bundle on every change; after two rotations a
// brand-new agent bootstraps from each published form, every form follows
// each bundle change within 1 s, and an agent started with the stale
// bundle recovers without a restart once its trust_bundle_path is fixed.
func TestBootstrapAfterCARotation(t *testing.T) {
	env := testenv.New(t)
	pubDir := filepath.Join(env.Dir, "published")
	if err := os.Mkdir(pubDir, 0o755); err != nil {
		t.Fatal(err)
	}
	pubFile := filepath.Join(pubDir, "bundle.pem")
	creds := awsfake.Credentials{AccessKeyID: "AKIDBUNDLEPUB", SecretAccessKey: "bundle-secret"}
	const param = "/hallmark/trust-bundle"
	ssmFake := awsfake.NewSSM(t, "eu-west-1", creds, map[string]string{param: "String"})
	hcl := fmt.Sprintf(`bundle_publisher "file" {
  path = %q
}
bundle_publisher "aws_ssm" {
  parameter_name = %q
  region         = "eu-west-1"
  endpoint       = %q
  format         = "spiffe"
}
`, pubFile, param, ssmFake.URL)
	kube := configMapPublisherHCL(t)
	hcl += kube.hcl
	srv := env.StartServer(testenv.WithServerHCL(`ca_ttl = "15s"
  default_x509_svid_ttl = "5s"
  agent_svid_ttl = "6s"`), testenv.WithHCL(hcl), testenv.WithServerEnv(
		"AWS_ACCESS_KEY_ID="+creds.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+creds.SecretAccessKey,
		"AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null"))
	// What an operator copied at install time.
	stale, err := os.ReadFile(srv.BundlePath())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sources := map[string]func() string{
		"file": func() string {
			b, _ := os.ReadFile(pubFile)
			return pemKey(b)
		},
		"ssm": func() string {
			v, _ := ssmFake.Value(param)
			return spiffeKey([]byte(v))
		},
	}
	if kube.read != nil {
		sources["configmap"] = func() string { return pemKey([]byte(kube.read())) }
	}
	w := watchBundles(t, ctx, []apiv1.AdminClient{srv.Admin()}, sources)

	waitTwoRotations(t, w)
	time.Sleep(1100 * time.Millisecond) // the last change has had its second
	w.check(t, time.Second)

	// The stale bundle: the agent cannot attest, and keeps retrying...
	stalePath := filepath.Join(env.Dir, "stale-bundle.pem")
	if err := os.WriteFile(stalePath, stale, 0o644); err != nil {
		t.Fatal(err)
	}
	ag := env.StartAgent(srv, srv.Token(), testenv.NoWait(), testenv.WithTrustHCL(fmt.Sprintf("trust_bundle_path = %q", stalePath)))
	testenv.WaitFor(t, 20*time.Second, "the stale-bundle agent to fail", func() bool {
		return strings.Contains(ag.Log(), "certificate signed by unknown authority")
	})
	if ag.Healthy() == nil {
		t.Fatal("an agent with the pre-rotation bundle attested")
	}
	// ...until its trust_bundle_path holds the published bundle: re-read at
	// the next attempt, no restart.
	published, err := os.ReadFile(pubFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stalePath, published, 0o644); err != nil {
		t.Fatal(err)
	}
	ag.WaitHealthy()

	// Brand-new agents from each published form.
	env.StartAgent(srv, srv.Token(), testenv.WithTrustHCL(fmt.Sprintf("trust_bundle_path = %q", pubFile)))

	mux := http.NewServeMux()
	mux.HandleFunc("/bundle.pem", func(rw http.ResponseWriter, r *http.Request) { http.ServeFile(rw, r, pubFile) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	env.StartAgent(srv, srv.Token(), testenv.WithTrustHCL(fmt.Sprintf(`trust_bundle_url = "http://%s/bundle.pem"
  trust_bundle_url_allow_loopback_http = true`, ln.Addr())))

	v, ok := ssmFake.Value(param)
	if !ok {
		t.Fatal("no SSM parameter")
	}
	ssmPath := filepath.Join(env.Dir, "ssm-bundle.json")
	if err := os.WriteFile(ssmPath, []byte(v), 0o644); err != nil {
		t.Fatal(err)
	}
	env.StartAgent(srv, srv.Token(), testenv.WithTrustHCL(fmt.Sprintf("trust_bundle_path = %q\n  trust_bundle_format = \"spiffe\"", ssmPath)))

	if kube.read != nil {
		cmPath := filepath.Join(env.Dir, "configmap-bundle.pem")
		if err := os.WriteFile(cmPath, []byte(kube.read()), 0o644); err != nil {
			t.Fatal(err)
		}
		env.StartAgent(srv, srv.Token(), testenv.WithTrustHCL(fmt.Sprintf("trust_bundle_path = %q", cmPath)))
	}
	if errs := ssmFake.Errors(); len(errs) > 0 {
		t.Logf("SSM fake error answers (ParameterNotFound before the first put is expected): %v", errs)
	}
	t.Logf("%d bundles; SSM puts %d of %d requests", len(w.serverBundles()), ssmFake.Puts.Load(), ssmFake.Requests.Load())
	if puts, n := ssmFake.Puts.Load(), len(w.serverBundles()); puts > int64(n) {
		t.Errorf("%d SSM writes for %d bundles: unchanged values were rewritten", puts, n)
	}
}

// waitTwoRotations waits until the servers' bundle holds neither the first
// authority nor its successor.
func waitTwoRotations(t *testing.T, w *bundleWatch) {
	t.Helper()
	testenv.WaitFor(t, 60*time.Second, "two CA rotations", func() bool {
		bs := w.serverBundles()
		var auths []string // in order of first appearance
		for _, k := range bs {
			for _, a := range strings.Split(k, ",") {
				if !slices.Contains(auths, a) {
					auths = append(auths, a)
				}
			}
		}
		if len(auths) < 3 {
			return false
		}
		cur := strings.Split(bs[len(bs)-1], ",")
		return !slices.Contains(cur, auths[0]) && !slices.Contains(cur, auths[1])
	})
}
