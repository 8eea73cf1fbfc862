package agent_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/agent"
	"github.com/hallmarkid/hallmark/agent/config"
	"github.com/hallmarkid/hallmark/internal/confexample"
)

// TestConfExamples: every block conf/agent.hcl documents in comments is
// valid as written (strict decoding, agent.Validate): each node_attestor
// example in place of the active one, the other blocks all together.
func TestConfExamples(t *testing.T) {
	src, err := os.ReadFile("../conf/agent.hcl")
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(t.TempDir(), "bundle.pem")
	if err := os.WriteFile(bundle, selfSignedPEM(t), 0o644); err != nil {
		t.Fatal(err)
	}
	base := strings.Replace(string(src), `trust_bundle_path = "./conf/bundle.pem"`, `trust_bundle_path = "`+bundle+`"`, 1)
	// The k8s workload attestor loads the kubelet CA it names.
	src = []byte(strings.ReplaceAll(string(src), "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt", bundle))
	const active = `node_attestor "join_token" {}`
	if !strings.Contains(base, "\n"+active+"\n") || !strings.Contains(base, bundle) {
		t.Fatal("conf/agent.hcl: no active join_token block or trust_bundle_path line to replace")
	}
	var nodes, others []string
	kinds := map[string]bool{}
	for _, b := range confexample.Uncomment(string(src)) {
		kind := confexample.Kind(b)
		kinds[kind] = true
		if kind == "node_attestor" {
			nodes = append(nodes, b)
		} else {
			others = append(others, b)
		}
	}
	for _, want := range []string{"node_attestor", "workload_attestor", "sds", "telemetry"} {
		if !kinds[want] {
			t.Errorf("conf/agent.hcl documents no %s block", want)
		}
	}
	if len(nodes) < 5 {
		t.Errorf("conf/agent.hcl documents %d node attestors, want tpm, aws_iid, aws_nitro, aws_iam, k8s_psat", len(nodes))
	}
	for _, n := range nodes {
		name := strings.SplitN(n, "\n", 2)[0]
		t.Run(name, func(t *testing.T) {
			full := strings.Replace(base, "\n"+active+"\n", "\n"+n+"\n", 1) + "\n" + strings.Join(others, "\n")
			cfg, err := config.Parse("agent.hcl", []byte(full))
			if err != nil {
				t.Fatal(err)
			}
			if err := agent.Validate(cfg); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func selfSignedPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "example.org"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
