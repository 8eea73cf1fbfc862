package test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	authv1 "k8s.io/api/authentication/v1"

	"github.com/hallmarkid/hallmark/agent/client"
	"github.com/hallmarkid/hallmark/attestors"
	"github.com/hallmarkid/hallmark/attestors/awsiam"
	"github.com/hallmarkid/hallmark/attestors/awsiam/awsfake"
	"github.com/hallmarkid/hallmark/attestors/k8spsat"
	"github.com/hallmarkid/hallmark/attestors/k8spsat/k8spsattest"
	"github.com/hallmarkid/hallmark/test/testenv"
)

// BenchmarkNodeAttest: one sequential node attestation against the real
// server binary over the Node API (TLS, a fresh P-256 key and CSR, the
// attestor's round trips, agent SVID signed and stored), per re-attestable
// attestor: aws_iam through the SigV4-checking STS fake, k8s_psat offline
// (JWKS) and through the TokenReview fake. The fakes answer over loopback,
// so the figures are the server's own cost plus one local HTTP round trip.
func BenchmarkNodeAttest(b *testing.B) {
	id := awsfake.Identity{
		Credentials: awsfake.Credentials{AccessKeyID: "ASIABENCHTASK0000001", SecretAccessKey: "bench-secret", SessionToken: "bench-session"},
		Arn:         "arn:aws:sts::111122223333:assumed-role/bench-task/s1", Account: "111122223333", UserID: "AROABENCH:s1",
	}
	sts := awsfake.NewSTS(b, id)
	issuer := k8spsattest.NewIssuer(b)
	pod := k8spsattest.Pod{Namespace: "hallmark", ServiceAccount: "hallmark-agent", Name: "hallmark-agent-b3nch",
		UID: "0f0e0d0c-1111-4222-8333-444455556666", NodeName: "node-1", NodeUID: "aaaabbbb-cccc-4ddd-8eee-ffff00001111"}
	const reviewed = "bench-onprem-token"
	api := k8spsattest.StartAPIServer(b, map[string]authv1.TokenReviewStatus{reviewed: k8spsattest.Review(pod)})

	env := testenv.New(b)
	caPath := filepath.Join(env.Dir, "jwks-ca.pem")
	tokPath := filepath.Join(env.Dir, "jwks-token")
	reviewedPath := filepath.Join(env.Dir, "reviewed-token")
	for path, data := range map[string][]byte{caPath: issuer.CAPEM, tokPath: []byte(issuer.Token(b, pod, []string{k8spsattest.DefaultAudience}, time.Hour)), reviewedPath: []byte(reviewed)} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	srv := env.StartServer(manyAttestations, testenv.WithHCL(`
node_attestor "aws_iam" {
  account_ids      = ["111122223333"]
  sts_hosts        = ["sts.us-east-1.amazonaws.com"]
  sts_url_override = "`+sts.URL+`"
}
node_attestor "k8s_psat" {
  cluster "eks" {
    service_account_allow_list = ["hallmark:hallmark-agent"]
    jwks_url     = "`+issuer.JWKSURL+`"
    jwks_ca_file = "`+caPath+`"
    issuer       = "`+issuer.Name+`"
  }
  cluster "onprem" {
    service_account_allow_list = ["hallmark:hallmark-agent"]
    kube_config_file = "`+k8spsattest.Kubeconfig(b, api)+`"
  }
}`))
	c, err := client.New(client.Config{Address: srv.Address, TrustDomain: td, InsecureBootstrap: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })

	iam, err := awsiam.NewCollector(awsiam.AgentConfig{TrustDomain: td, Region: "us-east-1"}, nil,
		awsiam.WithCredentials(credentials.NewStaticCredentialsProvider(id.AccessKeyID, id.SecretAccessKey, id.SessionToken)))
	if err != nil {
		b.Fatal(err)
	}
	eks, err := k8spsat.NewCollector(k8spsat.AgentConfig{Cluster: "eks", TokenPath: tokPath})
	if err != nil {
		b.Fatal(err)
	}
	onprem, err := k8spsat.NewCollector(k8spsat.AgentConfig{Cluster: "onprem", TokenPath: reviewedPath})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		col  attestors.NodeCollector
	}{
		{"aws_iam", iam},
		{"k8s_psat_jwks", eks},
		{"k8s_psat_tokenreview", onprem},
	} {
		b.Run(bc.name, func(b *testing.B) {
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			for b.Loop() {
				csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Attest(ctx, bc.col, key, csr); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
