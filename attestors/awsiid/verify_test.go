package awsiid_test

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/attestors"
	"github.com/hallmarkid/hallmark/attestors/awsiid"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

const docTemplate = `{
  "accountId" : "123456789012",
  "architecture" : "x86_64",
  "availabilityZone" : "us-east-1a",
  "billingProducts" : null,
  "devpayProductCodes" : null,
  "marketplaceProductCodes" : null,
  "imageId" : "ami-0abcdef1234567890",
  "instanceId" : "INSTANCE",
  "instanceType" : "m5.large",
  "kernelId" : null,
  "pendingTime" : "2024-01-02T03:04:05Z",
  "privateIp" : "10.0.0.12",
  "ramdiskId" : null,
  "region" : "REGION",
  "version" : "2017-09-30"
}`

const instanceID = "i-0123456789abcdef0"

func makeDoc(instance, region string) string {
	return strings.NewReplacer("INSTANCE", instance, "REGION", region).Replace(docTemplate)
}

// fixture is a pair of test regions with distinct keys, like AWS's.
type fixture struct {
	east2048, west2048, east1024 *rsa.PrivateKey
	rsa2048, rsa1024             map[string]*x509.Certificate
}

func newFixture(t testing.TB) *fixture {
	k := testKeys(t)
	f := &fixture{east2048: k[0], west2048: k[1], east1024: k[2]}
	f.rsa2048 = map[string]*x509.Certificate{
		"us-east-1": selfSigned(t, k[0], "us-east-1"),
		"us-west-2": selfSigned(t, k[1], "us-west-2"),
	}
	f.rsa1024 = map[string]*x509.Certificate{
		"us-east-1": selfSigned(t, k[2], "us-east-1"),
		"us-west-2": selfSigned(t, k[3], "us-west-2"),
	}
	return f
}

func (f *fixture) payload(t testing.TB, doc string, o p7opts) []byte {
	p := awsiid.Payload{
		Document:  doc,
		RSA2048:   base64.StdEncoding.EncodeToString(signPKCS7(t, []byte(doc), f.east2048, f.rsa2048["us-east-1"], o)),
		Signature: base64.StdEncoding.EncodeToString(signRSA1024(t, []byte(doc), f.east1024)),
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func marshal(t testing.TB, p awsiid.Payload) []byte {
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestVerifyThreats holds one case per EC2 instance identity line in
// THREATS.md, plus the decoding rules.
func TestVerifyThreats(t *testing.T) {
	f := newFixture(t)
	doc := makeDoc(instanceID, "us-east-1")
	p7 := func(o p7opts) string {
		return base64.StdEncoding.EncodeToString(signPKCS7(t, []byte(doc), f.east2048, f.rsa2048["us-east-1"], o))
	}
	sig1024 := base64.StdEncoding.EncodeToString(signRSA1024(t, []byte(doc), f.east1024))
	westDoc := makeDoc(instanceID, "us-west-2")
	forged := makeDoc("i-0fedcba9876543210", "us-east-1")

	tests := []struct {
		name    string
		cfg     awsiid.ServerConfig
		payload []byte
		wantErr string
	}{
		{name: "valid BER PKCS#7 like AWS", payload: f.payload(t, doc, p7opts{})},
		{name: "valid DER PKCS#7", payload: f.payload(t, doc, p7opts{der: true})},
		{name: "valid PKCS#7 without signed attributes", payload: f.payload(t, doc, p7opts{noAttrs: true})},
		{name: "valid PKCS#7 without the separate document", payload: marshal(t, awsiid.Payload{RSA2048: p7(p7opts{})})},
		{name: "valid PKCS#7 with base64 line breaks", payload: marshal(t, awsiid.Payload{Document: doc, RSA2048: wrap(p7(p7opts{}))})},
		{name: "account in allow-list", cfg: awsiid.ServerConfig{AccountIDs: []string{"123456789012"}}, payload: f.payload(t, doc, p7opts{})},
		{name: "bad signature", payload: marshal(t, awsiid.Payload{Document: doc,
			RSA2048: base64.StdEncoding.EncodeToString(signPKCS7(t, []byte(doc), f.east1024, f.rsa2048["us-east-1"], p7opts{}))}),
			wantErr: "does not verify with the region's certificate"},
		{name: "certificate of another region", payload: marshal(t, awsiid.Payload{Document: westDoc,
			RSA2048: base64.StdEncoding.EncodeToString(signPKCS7(t, []byte(westDoc), f.east2048, f.rsa2048["us-east-1"], p7opts{}))}),
			wantErr: "does not verify with the region's certificate"},
		{name: "unknown region", payload: marshal(t, awsiid.Payload{
			RSA2048: base64.StdEncoding.EncodeToString(signPKCS7(t, []byte(makeDoc(instanceID, "xx-nowhere-9")), f.east2048, f.rsa2048["us-east-1"], p7opts{}))}),
			wantErr: `unknown region "xx-nowhere-9"`},
		{name: "attacker-supplied document beside the signed one", payload: marshal(t, awsiid.Payload{Document: forged, RSA2048: p7(p7opts{})}),
			wantErr: "differs from the one signed"},
		{name: "message digest of another document", payload: marshal(t, awsiid.Payload{RSA2048: p7(p7opts{attrsContent: []byte(forged)})}),
			wantErr: "message digest does not match"},
		{name: "account not in allow-list", cfg: awsiid.ServerConfig{AccountIDs: []string{"210987654321"}}, payload: f.payload(t, doc, p7opts{}),
			wantErr: "account 123456789012 is not in the allow-list"},
		{name: "RSA-1024 signature only, not allowed", payload: marshal(t, awsiid.Payload{Document: doc, Signature: sig1024}),
			wantErr: "allow_rsa1024_signature is off"},
		{name: "RSA-1024 signature only, allowed", cfg: awsiid.ServerConfig{AllowRSA1024Signature: true}, payload: marshal(t, awsiid.Payload{Document: doc, Signature: sig1024})},
		{name: "RSA-1024 signature over another document", cfg: awsiid.ServerConfig{AllowRSA1024Signature: true},
			payload: marshal(t, awsiid.Payload{Document: forged, Signature: sig1024}), wantErr: "signature does not verify"},
		{name: "RSA-1024 signature, unknown region", cfg: awsiid.ServerConfig{AllowRSA1024Signature: true},
			payload: marshal(t, awsiid.Payload{Document: makeDoc(instanceID, "xx-nowhere-9"), Signature: sig1024}), wantErr: "unknown region"},
		{name: "no signature", payload: marshal(t, awsiid.Payload{Document: doc}), wantErr: "no signature"},
		{name: "two signers", payload: marshal(t, awsiid.Payload{RSA2048: p7(p7opts{signers: 2})}), wantErr: "2 signers"},
		{name: "SHA-1 digest", payload: marshal(t, awsiid.Payload{RSA2048: p7(p7opts{digestAlg: oidSHA1})}), wantErr: "not SHA-256"},
		{name: "trailing bytes after PKCS#7", payload: marshal(t, awsiid.Payload{RSA2048: p7(p7opts{tail: []byte{0}})}), wantErr: "trailing"},
		{name: "PKCS#7 not base64", payload: marshal(t, awsiid.Payload{RSA2048: "%%%"}), wantErr: "rsa2048"},
		{name: "PKCS#7 garbage", payload: marshal(t, awsiid.Payload{RSA2048: "AAAA"}), wantErr: "PKCS#7"},
		{name: "unknown payload field", payload: []byte(`{"document":"x","rsa2048":"AA","extra":1}`), wantErr: "unknown field"},
		{name: "payload not JSON", payload: []byte("MIAG"), wantErr: "payload"},
		{name: "payload with trailing data", payload: append(f.payload(t, doc, p7opts{}), []byte(" {}")...), wantErr: "trailing data"},
		{name: "payload too large", payload: make([]byte, awsiid.MaxPayloadSize+1), wantErr: "more than"},
		{name: "malformed instance ID in the signed document", payload: marshal(t, awsiid.Payload{
			RSA2048: base64.StdEncoding.EncodeToString(signPKCS7(t, []byte(makeDoc("i-../../x", "us-east-1")), f.east2048, f.rsa2048["us-east-1"], p7opts{}))}),
			wantErr: "instanceId"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := awsiid.NewVerifier(tc.cfg, quietLog(), awsiid.WithRegionCertificates(f.rsa2048, f.rsa1024))
			if err != nil {
				t.Fatal(err)
			}
			res, err := v.Verify(context.Background(), attestors.VerifyRequest{Payload: tc.payload, TrustDomain: td})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				t.Logf("rejected: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, want := res.AgentID.String(), "spiffe://example.org/agent/aws_iid/123456789012/us-east-1/"+instanceID; got != want {
				t.Errorf("agent ID %s, want %s", got, want)
			}
			if res.CanReattest {
				t.Error("CanReattest = true for a trust-on-first-use attestor")
			}
			if res.Evidence["instance_id"] != instanceID {
				t.Errorf("evidence %v", res.Evidence)
			}
		})
	}
}

func wrap(s string) string {
	var b strings.Builder
	for len(s) > 64 {
		b.WriteString(s[:64] + "\n")
		s = s[64:]
	}
	return b.String() + s
}

func TestSelectorsAndRenewal(t *testing.T) {
	f := newFixture(t)
	v, err := awsiid.NewVerifier(awsiid.ServerConfig{}, quietLog(), awsiid.WithRegionCertificates(f.rsa2048, f.rsa1024))
	if err != nil {
		t.Fatal(err)
	}
	payload := f.payload(t, makeDoc(instanceID, "us-east-1"), p7opts{})
	res, err := v.Verify(context.Background(), attestors.VerifyRequest{Payload: payload, TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range res.Selectors {
		got = append(got, s.String())
	}
	want := []string{
		"aws_iid:account_id:123456789012",
		"aws_iid:az:us-east-1a",
		"aws_iid:image_id:ami-0abcdef1234567890",
		"aws_iid:instance_id:" + instanceID,
		"aws_iid:instance_type:m5.large",
		"aws_iid:region:us-east-1",
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("selectors %v, want %v", got, want)
	}
	// The same instance yields the same agent ID every time and is never
	// re-attestable: the server core's unique agent record is what refuses
	// the second attestation (trust on first use).
	again, err := v.Verify(context.Background(), attestors.VerifyRequest{Payload: payload, TrustDomain: td})
	if err != nil || again.AgentID != res.AgentID || again.CanReattest {
		t.Fatalf("second verification: %v %v %v", err, again.AgentID, again.CanReattest)
	}
	other := spiffeid.RequireFromString("spiffe://example.org/agent/aws_iid/123456789012/us-east-1/i-0fedcba9876543210")
	if _, err := v.Verify(context.Background(), attestors.VerifyRequest{Payload: payload, TrustDomain: td, Renewal: true, CurrentID: other}); err == nil || !strings.Contains(err.Error(), "renewal") {
		t.Fatalf("renewal to another ID: %v", err)
	}
}

// TestEmbeddedCertificates checks the production trust anchors and the
// region selection against them.
func TestEmbeddedCertificates(t *testing.T) {
	rsa2048 := awsiid.RSA2048Certificates()
	rsa1024 := awsiid.RSA1024Certificates()
	if len(rsa2048) != 39 || len(rsa1024) != 38 {
		t.Fatalf("%d rsa2048 and %d rsa1024 regions, want 39 and 38", len(rsa2048), len(rsa1024))
	}
	for region, c := range rsa2048 {
		if k, ok := c.PublicKey.(*rsa.PublicKey); !ok || k.N.BitLen() != 2048 {
			t.Errorf("%s: rsa2048 certificate key is not RSA-2048", region)
		}
	}
	for _, region := range []string{"us-east-1", "eu-west-1", "ap-southeast-2", "us-gov-west-1", "cn-northwest-1", "eusc-de-east-1"} {
		if rsa2048[region] == nil || rsa1024[region] == nil {
			t.Errorf("%s missing", region)
		}
	}
	f := newFixture(t)
	v, err := awsiid.NewVerifier(awsiid.ServerConfig{AllowRSA1024Signature: true}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		payload []byte
		wantErr string
	}{
		{name: "test key claiming us-east-1", payload: f.payload(t, makeDoc(instanceID, "us-east-1"), p7opts{}), wantErr: "does not verify with the region's certificate"},
		{name: "test key claiming eu-central-2", payload: f.payload(t, makeDoc(instanceID, "eu-central-2"), p7opts{}), wantErr: "does not verify with the region's certificate"},
		{name: "region AWS does not have", payload: f.payload(t, makeDoc(instanceID, "xx-nowhere-9"), p7opts{}), wantErr: "unknown region"},
		{name: "RSA-1024 test key claiming us-west-2", payload: marshal(t, awsiid.Payload{Document: makeDoc(instanceID, "us-west-2"),
			Signature: base64.StdEncoding.EncodeToString(signRSA1024(t, []byte(makeDoc(instanceID, "us-west-2")), f.east1024))}), wantErr: "signature does not verify"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), attestors.VerifyRequest{Payload: tc.payload, TrustDomain: td})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestParseRegionCertificates(t *testing.T) {
	f := newFixture(t)
	pemOf := func(c *x509.Certificate) string {
		return "-----BEGIN CERTIFICATE-----\n" + wrap(base64.StdEncoding.EncodeToString(c.Raw)) + "\n-----END CERTIFICATE-----\n"
	}
	c := pemOf(f.rsa2048["us-east-1"])
	tests := []struct {
		name, in, wantErr string
	}{
		{name: "two regions", in: "# region: a-b-1 (A)\n" + c + "# region: c-d-2 (C)\n" + c},
		{name: "junk first", in: "hello\n# region: a-b-1\n" + c, wantErr: "text before"},
		{name: "no certificate", in: "# region: a-b-1\n", wantErr: "no certificate"},
		{name: "two certificates", in: "# region: a-b-1\n" + c + c, wantErr: "more than one"},
		{name: "duplicate region", in: "# region: a-b-1\n" + c + "# region: a-b-1\n" + c, wantErr: "listed twice"},
		{name: "no region code", in: "# region: \n" + c, wantErr: "without a code"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := awsiid.ParseRegionCertificates([]byte(tc.in))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestEmbeddedRegionsParse(t *testing.T) {
	// Every embedded region code must pass the document's region check, or
	// documents from that region could never verify.
	f := newFixture(t)
	for region := range awsiid.RSA2048Certificates() {
		p := f.payload(t, makeDoc(instanceID, region), p7opts{})
		v, _ := awsiid.NewVerifier(awsiid.ServerConfig{}, quietLog())
		_, err := v.Verify(context.Background(), attestors.VerifyRequest{Payload: p, TrustDomain: td})
		if err == nil || !strings.Contains(err.Error(), "does not verify") {
			t.Errorf("%s: err = %v, want a signature failure", region, err)
		}
	}
}
