package test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/attestors/awsiam/awsfake"
	"github.com/hallmarkid/hallmark/test/testenv"
)

// TestHABundlePublishers runs two servers on one PostgreSQL database, both
// publishing to the same SSM parameter and the same ConfigMap, through two
// CA rotations: the published forms follow every change within 1 s, never
// go back to an older bundle (the servers do not fight), are not rewritten
// when unchanged, and a new agent bootstraps from them.
func TestHABundlePublishers(t *testing.T) {
	ds := postgresDatastore(t)
	env := testenv.New(t)
	creds := awsfake.Credentials{AccessKeyID: "AKIDHAPUB", SecretAccessKey: "ha-secret"}
	const param = "/hallmark/ha-bundle"
	ssmFake := awsfake.NewSSM(t, "eu-west-1", creds, map[string]string{param: "String"})
	kube := configMapPublisherHCL(t)
	hcl := ds + "\n" + kube.hcl + fmt.Sprintf(`bundle_publisher "aws_ssm" {
  parameter_name = %q
  region         = "eu-west-1"
  endpoint       = %q
}
`, param, ssmFake.URL)
	opts := []testenv.ServerOption{testenv.WithServerHCL(`ca_ttl = "15s"
  default_x509_svid_ttl = "5s"
  agent_svid_ttl = "6s"`), testenv.WithHCL(hcl), testenv.WithServerEnv(
		"AWS_ACCESS_KEY_ID="+creds.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+creds.SecretAccessKey,
		"AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")}
	a := env.StartServer(opts...)
	b := env.StartServer(append(opts, testenv.WithCAFrom(a))...)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := watchBundles(t, ctx, []apiv1.AdminClient{a.Admin(), b.Admin()}, map[string]func() string{
		"ssm":       func() string { v, _ := ssmFake.Value(param); return pemKey([]byte(v)) },
		"configmap": func() string { return pemKey([]byte(kube.read())) },
	})
	waitTwoRotations(t, w)
	time.Sleep(1100 * time.Millisecond)
	w.check(t, time.Second)
	// The servers write the shared CA state by compare-and-swap: one that
	// prepared an authority as the other did adopts the other's before
	// publishing, so no server ever shows a bundle of its own.
	for _, i := range w.heldAlone() {
		t.Errorf("bundle #%d was shown by one server only: it published an authority the other never held (the servers fought)", i)
	}

	// The parameter's history: each value new, never an older one again.
	// PutParameter has no condition, so two servers that adopted the same
	// change at the same instant may both write it: the same value twice
	// in a row is not going back.
	hist := ssmFake.History(param)
	seen := map[string]int{}
	dups := 0
	for i, v := range hist {
		switch j, ok := seen[v.Value]; {
		case ok && j == i-1:
			dups++
		case ok:
			t.Errorf("SSM write %d of %d went back to the bundle of write %d: the servers fought", i, len(hist), j)
		}
		seen[v.Value] = i
	}
	t.Logf("%d bundles across the two servers, %d SSM writes (%d the same value again at once)", len(w.serverBundles()), len(hist), dups)

	p := filepath.Join(env.Dir, "ha-bundle.pem")
	if err := os.WriteFile(p, []byte(kube.read()), 0o644); err != nil {
		t.Fatal(err)
	}
	env.StartAgent(b, b.Token(), testenv.WithTrustHCL(fmt.Sprintf("trust_bundle_path = %q", p)))
}

// heldAlone returns the indexes of the bundles that not every server
// showed.
func (w *bundleWatch) heldAlone() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []int
	for i, k := range w.order {
		for name, seen := range w.first {
			if _, ok := seen[k]; strings.HasPrefix(name, "server") && !ok {
				out = append(out, i)
				break
			}
		}
	}
	return out
}
