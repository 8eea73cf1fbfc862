package test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/hallmarkid/hallmark/test/testenv"
)

const secretType = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

func sdsClient(t *testing.T, sock string) secretv3.SecretDiscoveryServiceClient {
	t.Helper()
	cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return secretv3.NewSecretDiscoveryServiceClient(cc)
}

// sdsSecrets decodes and validates a response's secrets by name.
func sdsSecrets(t *testing.T, r *discoveryv3.DiscoveryResponse) map[string]*tlsv3.Secret {
	t.Helper()
	if err := r.Validate(); err != nil {
		t.Fatalf("response does not validate: %v", err)
	}
	out := map[string]*tlsv3.Secret{}
	for _, a := range r.Resources {
		s := &tlsv3.Secret{}
		if err := a.UnmarshalTo(s); err != nil {
			t.Fatal(err)
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("secret %q does not validate: %v", s.Name, err)
		}
		out[s.Name] = s
	}
	return out
}

func sdsLeaf(t *testing.T, s *tlsv3.Secret) *x509.Certificate {
	t.Helper()
	tc := s.GetTlsCertificate()
	pair, err := tls.X509KeyPair(tc.GetCertificateChain().GetInlineBytes(), tc.GetPrivateKey().GetInlineBytes())
	if err != nil {
		t.Fatalf("secret %q: %v", s.Name, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

// TestSDSEndToEnd runs Envoy's side of SDS (go-control-plane's generated
// client; no Envoy binary exists here) against the real agent, on the
// Workload API socket and on an Istio-style extra socket.
func TestSDSEndToEnd(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer()
	istioSock := filepath.Join(env.Dir, "workload-spiffe-uds", "socket")
	ag := env.StartAgent(srv, srv.Token(), testenv.WithAgentTopHCL(fmt.Sprintf("sds {\n  socket_path = %q\n}", istioSock)))
	const want = "spiffe://example.org/workload/envoy"
	srv.CreateEntry(want, ag.ID(), "-selector", uidSelector(), "-x509SVIDTTL", "4")
	waitForSVID(t, ag.Addr(), want)

	node := &corev3.Node{Id: "sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local", UserAgentName: "envoy",
		UserAgentVersionType: &corev3.Node_UserAgentBuildVersion{UserAgentBuildVersion: &corev3.BuildVersion{
			Version: &typev3.SemanticVersion{MajorNumber: 1, MinorNumber: 30}}}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	withHeader := metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "true")

	// SDS on the Workload API socket needs no security header (as SPIRE:
	// Envoy configured for SPIRE sends none); the Workload API methods on
	// the same socket still require it.
	if _, err := sdsClient(t, ag.SocketPath).FetchSecrets(ctx, &discoveryv3.DiscoveryRequest{TypeUrl: secretType, ResourceNames: []string{"default"}}); err != nil {
		t.Fatalf("SDS on the Workload API socket without the header: %v", err)
	}
	wconn, err := grpc.NewClient("unix://"+ag.SocketPath, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer wconn.Close()
	wstream, err := workload.NewSpiffeWorkloadAPIClient(wconn).FetchX509SVID(ctx, &workload.X509SVIDRequest{})
	if err == nil {
		_, err = wstream.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("FetchX509SVID without the header: %v, want InvalidArgument", err)
	}
	resp, err := sdsClient(t, ag.SocketPath).FetchSecrets(withHeader,
		&discoveryv3.DiscoveryRequest{TypeUrl: secretType, Node: node, ResourceNames: []string{"default", "ROOTCA"}})
	if err != nil {
		t.Fatalf("FetchSecrets on the Workload API socket: %v", err)
	}
	sec := sdsSecrets(t, resp)
	if leaf := sdsLeaf(t, sec["default"]); leaf.URIs[0].String() != want {
		t.Fatalf("default carries %s, want %s", leaf.URIs[0], want)
	}
	if cv := sec["ROOTCA"].GetValidationContext().GetCustomValidatorConfig(); cv.GetName() != "envoy.tls.cert_validator.spiffe" {
		t.Fatalf("ROOTCA for Envoy 1.30 is not the SPIFFE validator: %v", sec["ROOTCA"])
	}

	// The Istio socket: no header, as Istio's Envoy sends none; rotations
	// (4 s TTL, renewed at half-life) are pushed on the stream.
	s, err := sdsClient(t, istioSock).StreamSecrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: secretType, Node: node, ResourceNames: []string{"default"}}); err != nil {
		t.Fatal(err)
	}
	serials := map[string]bool{}
	var last *discoveryv3.DiscoveryResponse
	for len(serials) < 3 {
		r, err := s.Recv()
		if err != nil {
			t.Fatalf("StreamSecrets on %s after %d SVIDs: %v", istioSock, len(serials), err)
		}
		leaf := sdsLeaf(t, sdsSecrets(t, r)["default"])
		if leaf.URIs[0].String() != want || time.Now().After(leaf.NotAfter) {
			t.Fatalf("pushed %s expiring %s", leaf.URIs[0], leaf.NotAfter)
		}
		serials[leaf.SerialNumber.String()] = true
		if last != nil && r.Nonce == last.Nonce {
			t.Fatal("nonce reused")
		}
		last = r
		if err := s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: secretType, VersionInfo: r.VersionInfo, ResponseNonce: r.Nonce,
			ResourceNames: []string{"default"}}); err != nil {
			t.Fatal(err)
		}
	}
}
