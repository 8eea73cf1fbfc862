// Command hallmark-demo is the helper scripts/demo.sh (`make demo`) runs for
// what the shipped CLIs do not do: manufacture a swtpm whose EK certificate
// is signed by a private CA (the demo's "TPM manufacturer"), ask the agent
// for secrets over Envoy SDS with go-control-plane's generated client (no
// Envoy binary is needed), and pick a free loopback port. It is built into
// the demo's own directory, never into bin/ or a release.
//
//	hallmark-demo manufacture -dir D   # D/state: swtpm state, D/ekca/ca.pem: the server's ek_ca_dir
//	hallmark-demo sds -socketPath P    # one SDS response, as Envoy asks for it
//	hallmark-demo freeport             # a free 127.0.0.1 TCP port
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/hallmarkid/hallmark/tpm/tpmtest"
)

const secretType = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "hallmark-demo:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: hallmark-demo manufacture -dir D | sds -socketPath P | freeport")
	}
	switch args[0] {
	case "manufacture":
		return manufacture(args[1:], stdout)
	case "sds":
		return sds(args[1:], stdout)
	case "freeport":
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer l.Close()
		_, err = fmt.Fprintln(stdout, l.Addr().(*net.TCPAddr).Port)
		return err
	}
	return fmt.Errorf("unknown command %q", args[0])
}

// manufacture makes a CA, has swtpm_setup write a TPM state whose EK
// certificates that CA signs (tpmtest's private swtpm_localca setup, never
// the shared /var/lib/swtpm-localca) and writes the CA certificate where the
// server's ek_ca_dir points. It prints the CA's common name.
func manufacture(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("manufacture", flag.ContinueOnError)
	dir := fs.String("dir", "", "work directory (receives state/ and ekca/)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("manufacture: -dir is required")
	}
	ca, err := tpmtest.NewCA("Hallmark Demo TPM Manufacturer CA")
	if err != nil {
		return fmt.Errorf("manufacture: CA: %w", err)
	}
	if _, err := tpmtest.Manufacture(*dir, ca); err != nil {
		return fmt.Errorf("manufacture: %w", err)
	}
	ekca := filepath.Join(*dir, "ekca")
	if err := os.MkdirAll(ekca, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(ekca, "ca.pem"), ca.CertPEM, 0o644); err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, ca.Cert.Subject.CommonName)
	return err
}

// sds opens an SDS stream as Envoy does (a Node with Envoy's user agent,
// the `default` certificate and the `ROOTCA` validation context), reads
// the first response and prints one line: the SPIFFE ID and serial of the
// certificate, and how the bundle is delivered.
func sds(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("sds", flag.ContinueOnError)
	socketPath := fs.String("socketPath", "", "agent Workload API (or SDS) socket")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the response")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cc, err := grpc.NewClient("unix://"+*socketPath, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("sds: %w", err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	// The Workload API socket wants the SPIFFE security header; Envoy
	// configured for SPIRE sends it as initial metadata.
	ctx = metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "true")
	stream, err := secretv3.NewSecretDiscoveryServiceClient(cc).StreamSecrets(ctx)
	if err != nil {
		return fmt.Errorf("sds: %w", err)
	}
	node := &corev3.Node{Id: "demo-envoy", Cluster: "demo", UserAgentName: "envoy",
		UserAgentVersionType: &corev3.Node_UserAgentBuildVersion{UserAgentBuildVersion: &corev3.BuildVersion{
			Version: &typev3.SemanticVersion{MajorNumber: 1, MinorNumber: 30}}}}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: secretType, Node: node, ResourceNames: []string{"default", "ROOTCA"}}); err != nil {
		return fmt.Errorf("sds: send: %w", err)
	}
	resp, err := stream.Recv()
	if err != nil {
		return fmt.Errorf("sds: %w", err)
	}
	var (
		leaf   *x509.Certificate
		bundle string
	)
	for _, a := range resp.GetResources() {
		s := &tlsv3.Secret{}
		if err := a.UnmarshalTo(s); err != nil {
			return fmt.Errorf("sds: secret: %w", err)
		}
		switch {
		case s.GetTlsCertificate() != nil:
			tc := s.GetTlsCertificate()
			pair, err := tls.X509KeyPair(tc.GetCertificateChain().GetInlineBytes(), tc.GetPrivateKey().GetInlineBytes())
			if err != nil {
				return fmt.Errorf("sds: secret %q: %w", s.GetName(), err)
			}
			if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
				return fmt.Errorf("sds: secret %q: %w", s.GetName(), err)
			}
		case s.GetValidationContext().GetCustomValidatorConfig() != nil:
			bundle = s.GetName() + " as " + s.GetValidationContext().GetCustomValidatorConfig().GetName()
		case s.GetValidationContext().GetTrustedCa() != nil:
			bundle = s.GetName() + " as trusted_ca"
		}
	}
	if leaf == nil || len(leaf.URIs) != 1 {
		return fmt.Errorf("sds: no TLS certificate with one SPIFFE ID in the response (version %s)", resp.GetVersionInfo())
	}
	_, err = fmt.Fprintf(stdout, "%s serial %s, bundle %s\n", leaf.URIs[0], leaf.SerialNumber, bundle)
	return err
}
