package test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/attestors/awsnitro"
	"github.com/hallmarkid/hallmark/test/testenv"
)

// The aws_nitro agent half needs /dev/nsm, which exists only inside a Nitro
// Enclave, and the collector has no document-file hook: a file could not
// answer a fresh nonce anyway, and a switch that swaps the hardware for a
// file is attack surface in every agent. So the server half runs as the
// real binary and is driven through the Node API by the agent's own client
// and the real collector, whose NSM (the in-process WithNSM hook) replays
// a real AWS document; the agent binary is run up to the point where it
// needs the device.

// replayNSM answers every attestation request with one recorded document
// and remembers what it was asked to commit to.
type replayNSM struct {
	doc []byte

	mu     sync.Mutex
	nonces [][]byte
	keys   [][]byte
}

func (n *replayNSM) Attest(nonce, _, publicKey []byte) ([]byte, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.nonces = append(n.nonces, append([]byte(nil), nonce...))
	n.keys = append(n.keys, append([]byte(nil), publicKey...))
	return n.doc, nil
}

func nitroDoc(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "aws", name))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// attestNitro runs one aws_nitro attestation against srv through the Node
// API and returns the PKIX DER of the agent key and the outcome.
func attestNitro(t *testing.T, srv *testenv.Server, nsm *replayNSM) ([]byte, error) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	pkix, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	col, err := awsnitro.NewCollector(awsnitro.AgentConfig{}, nil, awsnitro.WithNSM(nsm))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = nodeClient(t, srv).Attest(ctx, col, key, csr)
	return pkix, err
}

// The real binary server, configured with an aws_nitro block, runs the
// nonce round with the real collector and judges real AWS documents: the
// challenge is a fresh 32-byte nonce per attempt, the collector is asked
// to bind the CSR's key, and each document is refused with its reason in
// the answer, the server log and the audit log.
func TestAWSNitroServerHalfRealDocumentsE2E(t *testing.T) {
	real := nitroDoc(t, "nitro-attestation-real.b64")
	debug := nitroDoc(t, "nitro-attestation-debug-real.b64")
	env := testenv.New(t)
	strict := env.StartServer(testenv.WithHCL(`
node_attestor "aws_nitro" {
  max_age    = "5m"
  clock_skew = "30s"
}`))
	// Without a useful age bound, the chain is checked at the server's
	// clock: the leaf of a 2024 document has long expired.
	ageless := env.StartServer(testenv.WithHCL(`
node_attestor "aws_nitro" {
  max_age     = "876000h"
  allow_debug = true
}`))

	tests := []struct {
		name    string
		srv     *testenv.Server
		doc     []byte
		wantErr string
	}{
		{name: "real document, today", srv: strict, doc: real, wantErr: "older than max_age 5m0s"},
		{name: "real debug-mode document, today", srv: strict, doc: debug, wantErr: "older than max_age 5m0s"},
		{name: "real document, no age bound", srv: ageless, doc: real, wantErr: "certificate chain: x509: certificate has expired"},
		{name: "real document with a trailing byte", srv: ageless, doc: append(bytes.Clone(real), 0), wantErr: "decode COSE_Sign1: 1 trailing bytes"},
		{name: "real document cut short", srv: ageless, doc: real[:len(real)/2], wantErr: "decode COSE_Sign1: unexpected EOF"},
		{name: "base64 text instead of CBOR", srv: ageless, doc: []byte(base64.StdEncoding.EncodeToString(real)), wantErr: "cannot unmarshal UTF-8 text string"},
	}
	seen := map[string]bool{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nsm := &replayNSM{doc: tc.doc}
			pkix, err := attestNitro(t, tc.srv, nsm)
			if err == nil || !strings.Contains(err.Error(), "PermissionDenied") || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want PermissionDenied with %q", err, tc.wantErr)
			}
			if len(nsm.nonces) != 1 || len(nsm.nonces[0]) != 32 {
				t.Fatalf("server challenges %x; want one 32-byte nonce", nsm.nonces)
			}
			if seen[string(nsm.nonces[0])] {
				t.Fatal("the server reused a nonce")
			}
			seen[string(nsm.nonces[0])] = true
			if !bytes.Equal(nsm.keys[0], pkix) {
				t.Fatal("the collector did not ask the NSM to bind the CSR's key")
			}
			testenv.WaitFor(t, 5*time.Second, "the refusal in the server and audit logs", func() bool {
				return strings.Contains(tc.srv.Log(), "aws_nitro attestation rejected") &&
					auditHas(t, tc.srv, "rejected", `"attestor":"aws_nitro"`, tc.wantErr)
			})
		})
	}
	if out := strict.MustCLI("agent", "list"); strings.Contains(out, "aws_nitro") {
		t.Fatalf("a refused enclave was recorded:\n%s", out)
	}
}

// The agent binary decodes its aws_nitro block, sends the hello, receives
// the server's nonce and then needs the NSM device; outside an enclave it
// reports the device it could not open and keeps retrying, and the server
// records the aborted attestation.
func TestAWSNitroAgentWithoutNSMDeviceE2E(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer(testenv.WithHCL(`node_attestor "aws_nitro" {}`))
	device := filepath.Join(env.Dir, "nsm")
	ag := env.StartAgent(srv, "", testenv.NoWait(), testenv.WithAgentTopHCL(`
node_attestor "aws_nitro" {
  device = "`+device+`"
}`))
	testenv.WaitFor(t, 10*time.Second, "the agent to report the missing NSM", func() bool {
		return strings.Contains(ag.Log(), "awsnitro: nsm attestation: open "+device)
	})
	testenv.WaitFor(t, 5*time.Second, "the server to record the aborted attestation", func() bool {
		return strings.Contains(srv.Log(), "Attestation rejected") && auditHas(t, srv, "rejected", `"attestor":"aws_nitro"`)
	})
	if ag.Exited() {
		t.Fatalf("agent exited instead of retrying:\n%s", ag.Log())
	}
	if err := ag.Healthy(); err == nil {
		t.Fatal("agent healthy without an identity")
	}
}
