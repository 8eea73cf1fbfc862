package awsnitro_test

import (
	"bytes"
	"context"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/attestors"
	"github.com/hallmarkid/hallmark/attestors/awsnitro"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

func newVerifier(t testing.TB, cfg awsnitro.ServerConfig, pki *testPKI, now time.Time) *awsnitro.Verifier {
	t.Helper()
	opts := []awsnitro.Option{awsnitro.WithClock(fixedClock(now))}
	if pki != nil {
		opts = append(opts, awsnitro.WithRoot(pki.root))
	}
	v, err := awsnitro.NewVerifier(cfg, quietLog(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func hello() []byte { return []byte(`{"version":1}`) }

// TestVerifyThreats holds one case per Nitro line in THREATS.md, and the
// decoder's strictness rules.
func TestVerifyThreats(t *testing.T) {
	pki := newPKI(t)
	agentKey := mustKey(t, elliptic.P256())
	agentDER, err := x509.MarshalPKIXPublicKey(agentKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	otherKey := mustKey(t, elliptic.P256())
	otherDER, _ := x509.MarshalPKIXPublicKey(otherKey.Public())

	impostorKey := mustKey(t, elliptic.P384())
	impostor := newCert(t, "impostor", impostorKey.Public(), nil, impostorKey, true, t0.Add(-time.Hour), t0.Add(time.Hour))
	impostorLeaf := newCert(t, "leaf", pki.leafKey.Public(), impostor, impostorKey, false, t0.Add(-time.Hour), t0.Add(time.Hour))
	expiredLeaf := newCert(t, "leaf", pki.leafKey.Public(), pki.inter, pki.interKey, false, t0.Add(-4*time.Hour), t0.Add(-time.Minute))
	p256Key := mustKey(t, elliptic.P256())
	p256Leaf := newCert(t, "leaf", p256Key.Public(), pki.inter, pki.interKey, false, t0.Add(-time.Hour), t0.Add(time.Hour))

	pcr0 := hex.EncodeToString(pcrs(0x10)[0])
	other := strings.Repeat("ab", 48)

	tests := []struct {
		name     string
		cfg      awsnitro.ServerConfig
		realRoot bool // verify against the pinned G1 root instead of the test root
		mod      func(s *spec)
		wantErr  string
	}{
		{name: "valid"},
		{name: "valid tagged COSE_Sign1", mod: func(s *spec) { s.tagged = true }},
		{name: "valid with PCR policy", cfg: awsnitro.ServerConfig{PCR0: []string{other, pcr0}}},
		{name: "root is not the pinned G1", realRoot: true, wantErr: "is not the pinned root"},
		{name: "impostor root inside cabundle", mod: func(s *spec) {
			s.set("certificate", impostorLeaf.Raw).set("cabundle", [][]byte{pki.root.Raw, impostor.Raw})
		}, wantErr: "certificate chain"},
		{name: "broken chain (intermediate missing)", mod: func(s *spec) { s.set("cabundle", [][]byte{pki.root.Raw}) }, wantErr: "certificate chain"},
		{name: "expired leaf at verification time", mod: func(s *spec) { s.set("certificate", expiredLeaf.Raw) }, wantErr: "expired"},
		{name: "leaf not P-384", mod: func(s *spec) { s.set("certificate", p256Leaf.Raw) }, wantErr: "not ECDSA P-384"},
		{name: "signed by a key other than the leaf", mod: func(s *spec) { s.signer = pki.interKey }, wantErr: "signature does not verify"},
		{name: "older than max_age", mod: func(s *spec) { s.set("timestamp", uint64(t0.Add(-6*time.Minute).UnixMilli())) }, wantErr: "older than max_age"},
		{name: "older than configured max_age", cfg: awsnitro.ServerConfig{MaxAge: "10s"}, mod: func(s *spec) { s.set("timestamp", uint64(t0.Add(-11*time.Second).UnixMilli())) }, wantErr: "older than max_age"},
		{name: "from the future beyond skew", mod: func(s *spec) { s.set("timestamp", uint64(t0.Add(time.Minute).UnixMilli())) }, wantErr: "in the future"},
		{name: "future within skew", mod: func(s *spec) { s.set("timestamp", uint64(t0.Add(20*time.Second).UnixMilli())) }},
		{name: "nonce is not the server challenge", mod: func(s *spec) { s.set("nonce", bytes.Repeat([]byte{1}, 32)) }, wantErr: "nonce does not match"},
		{name: "nonce missing", mod: func(s *spec) { s.del("nonce") }, wantErr: "nonce does not match"},
		{name: "public_key of another key", mod: func(s *spec) { s.set("public_key", otherDER) }, wantErr: "does not commit to the agent's key"},
		{name: "public_key missing, key only in user_data", mod: func(s *spec) { s.del("public_key").set("user_data", agentDER) }, wantErr: "does not commit to the agent's key"},
		{name: "PCR0 not in allow-list", cfg: awsnitro.ServerConfig{PCR0: []string{other}}, wantErr: "PCR0"},
		{name: "expected PCR missing", cfg: awsnitro.ServerConfig{PCR8: []string{other}}, mod: func(s *spec) {
			p := pcrs(0x10)
			delete(p, 8)
			s.set("pcrs", p)
		}, wantErr: "PCR8 is required by policy but missing"},
		{name: "debug-mode enclave", mod: func(s *spec) { s.set("pcrs", pcrs(0)) }, wantErr: "debug-mode"},
		{name: "debug-mode enclave allowed", cfg: awsnitro.ServerConfig{AllowDebug: true}, mod: func(s *spec) { s.set("pcrs", pcrs(0)) }},
		{name: "COSE alg ES256", mod: func(s *spec) { s.alg = -7 }, wantErr: "want ES384"},
		{name: "ASN.1 signature", mod: func(s *spec) { s.asn1Sig = true }, wantErr: "want 96"},
		{name: "indefinite-length payload map", mod: func(s *spec) { s.indefMap = true }, wantErr: "indefinite-length"},
		{name: "indefinite-length COSE array", mod: func(s *spec) { s.indefArray = true }, wantErr: "indefinite-length"},
		{name: "duplicate payload key", mod: func(s *spec) { s.pairs = append(s.pairs, kv{"nonce", []byte("x")}) }, wantErr: "duplicate map key"},
		{name: "trailing bytes after document", mod: func(s *spec) { s.docTail = []byte{0} }, wantErr: "trailing bytes"},
		{name: "trailing bytes after payload", mod: func(s *spec) { s.payloadTail = []byte{0} }, wantErr: "trailing bytes"},
		{name: "oversized user_data", mod: func(s *spec) { s.set("user_data", make([]byte, 1025)) }, wantErr: "user_data is 1025 bytes"},
		{name: "oversized nonce", mod: func(s *spec) { s.set("nonce", make([]byte, 2000)) }, wantErr: "nonce is 2000 bytes"},
		{name: "oversized certificate", mod: func(s *spec) { s.set("certificate", make([]byte, 5000)) }, wantErr: "certificate is 5000 bytes"},
		{name: "too many cabundle entries", mod: func(s *spec) {
			s.set("cabundle", [][]byte{pki.root.Raw, pki.inter.Raw, pki.inter.Raw, pki.inter.Raw, pki.inter.Raw, pki.inter.Raw, pki.inter.Raw, pki.inter.Raw, pki.inter.Raw})
		}, wantErr: "more than 8"},
		{name: "unknown payload key", mod: func(s *spec) { s.set("extra", 1) }, wantErr: "unknown field"},
		{name: "NitroTPM document", mod: func(s *spec) { s.set("nitrotpm_pcrs", pcrs(1)) }, wantErr: "NitroTPM"},
		{name: "digest not SHA384", mod: func(s *spec) { s.set("digest", "SHA256") }, wantErr: "want SHA384"},
		{name: "PCR of the wrong size", mod: func(s *spec) { s.set("pcrs", map[uint][]byte{0: make([]byte, 32)}) }, wantErr: "want 48"},
		{name: "module_id missing", mod: func(s *spec) { s.del("module_id") }, wantErr: "module_id is missing"},
		{name: "module_id not a path segment", mod: func(s *spec) { s.set("module_id", "../x") }, wantErr: "not a valid SPIFFE path segment"},
		{name: "non-empty unprotected header", mod: func(s *spec) { s.unprotected = map[int64]any{4: []byte("kid")} }, wantErr: "unprotected header"},
		{name: "nested too deep", mod: func(s *spec) { s.set("user_data", []any{[]any{[]any{[]any{[]any{[]any{1}}}}}}) }, wantErr: "exceeded max nested level"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := pki
			if tc.realRoot {
				p = nil
			}
			v := newVerifier(t, tc.cfg, p, t0)
			var sent []byte
			res, err := v.Verify(context.Background(), attestors.VerifyRequest{
				Payload:     hello(),
				AgentKey:    agentKey.Public(),
				TrustDomain: td,
				Challenge: func(_ context.Context, nonce []byte) ([]byte, error) {
					s := pki.defaultSpec(nonce, agentDER, t0)
					if tc.mod != nil {
						tc.mod(s)
					}
					sent = s.build(t)
					return sent, nil
				},
			})
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
			if got, want := res.AgentID.String(), "spiffe://example.org/agent/aws_nitro/i-0123456789abcdef0-enc0123456789abcdef"; got != want {
				t.Errorf("agent ID %s, want %s", got, want)
			}
			if !res.CanReattest {
				t.Error("CanReattest = false")
			}
			// The same document again must fail: the nonce is single use
			// and the document itself is remembered.
			_, err = v.Verify(context.Background(), attestors.VerifyRequest{
				Payload: hello(), AgentKey: agentKey.Public(), TrustDomain: td,
				Challenge: func(context.Context, []byte) ([]byte, error) { return sent, nil },
			})
			if err == nil || !strings.Contains(err.Error(), "nonce does not match") {
				t.Fatalf("replay: err = %v", err)
			}
			if _, err := v.VerifyDocument(sent, awsnitro.Expect{}); err == nil || !strings.Contains(err.Error(), "already used") {
				t.Fatalf("replay without nonce: err = %v", err)
			}
		})
	}
}

func TestVerifyRequest(t *testing.T) {
	pki := newPKI(t)
	agentKey := mustKey(t, elliptic.P256())
	agentDER, _ := x509.MarshalPKIXPublicKey(agentKey.Public())
	good := func(_ context.Context, nonce []byte) ([]byte, error) {
		return pki.defaultSpec(nonce, agentDER, t0).build(t), nil
	}
	wrongID := spiffeid.RequireFromString("spiffe://example.org/agent/aws_nitro/i-other-enc1")
	tests := []struct {
		name    string
		req     attestors.VerifyRequest
		wantErr string
	}{
		{name: "bad hello", req: attestors.VerifyRequest{Payload: []byte(`{"version":1,"x":2}`), Challenge: good, AgentKey: agentKey.Public()}, wantErr: "payload"},
		{name: "hello with trailing data", req: attestors.VerifyRequest{Payload: []byte(`{"version":1} {}`), Challenge: good, AgentKey: agentKey.Public()}, wantErr: "trailing"},
		{name: "wrong version", req: attestors.VerifyRequest{Payload: []byte(`{"version":2}`), Challenge: good, AgentKey: agentKey.Public()}, wantErr: "unsupported version"},
		{name: "no challenge channel", req: attestors.VerifyRequest{Payload: hello(), AgentKey: agentKey.Public()}, wantErr: "no challenge channel"},
		{name: "no agent key", req: attestors.VerifyRequest{Payload: hello(), Challenge: good}, wantErr: "no agent key"},
		{name: "challenge fails", req: attestors.VerifyRequest{Payload: hello(), AgentKey: agentKey.Public(), Challenge: func(context.Context, []byte) ([]byte, error) {
			return nil, errors.New("agent gone")
		}}, wantErr: "agent gone"},
		{name: "renewal to another ID", req: attestors.VerifyRequest{Payload: hello(), AgentKey: agentKey.Public(), Challenge: good, Renewal: true, CurrentID: wrongID}, wantErr: "renewal"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifier(t, awsnitro.ServerConfig{}, pki, t0)
			tc.req.TrustDomain = td
			_, err := v.Verify(context.Background(), tc.req)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     awsnitro.ServerConfig
		wantErr string
	}{
		{name: "defaults"},
		{name: "bad max_age", cfg: awsnitro.ServerConfig{MaxAge: "soon"}, wantErr: "max_age"},
		{name: "negative max_age", cfg: awsnitro.ServerConfig{MaxAge: "-1m"}, wantErr: "max_age"},
		{name: "bad clock_skew", cfg: awsnitro.ServerConfig{ClockSkew: "x"}, wantErr: "clock_skew"},
		{name: "short PCR", cfg: awsnitro.ServerConfig{PCR0: []string{"abcd"}}, wantErr: "pcr0"},
		{name: "empty PCR list", cfg: awsnitro.ServerConfig{PCR4: []string{}}, wantErr: "pcr4: empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := awsnitro.NewVerifier(tc.cfg, nil)
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

// TestCollectorRoundTrip runs the agent half against the server half with a
// software NSM signing under the test PKI.
func TestCollectorRoundTrip(t *testing.T) {
	pki := newPKI(t)
	c, err := awsnitro.NewCollector(awsnitro.AgentConfig{}, quietLog(), awsnitro.WithNSM(&softNSM{t: t, pki: pki, now: fixedClock(t0)}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Answer(context.Background(), make([]byte, 32)); err == nil {
		t.Fatal("Answer before Payload succeeded")
	}
	agentKey := mustKey(t, elliptic.P256())
	payload, err := c.Payload(context.Background(), attestors.CollectRequest{AgentKey: agentKey.Public()})
	if err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, awsnitro.ServerConfig{}, pki, t0)
	res, err := v.Verify(context.Background(), attestors.VerifyRequest{
		Payload: payload, AgentKey: agentKey.Public(), TrustDomain: td, Challenge: c.Answer,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"aws_nitro:module_id:i-0123456789abcdef0-enc0123456789abcdef",
		"aws_nitro:pcr0:" + hex.EncodeToString(pcrs(0x10)[0]),
		"aws_nitro:pcr1:" + hex.EncodeToString(pcrs(0x10)[1]),
		"aws_nitro:pcr2:" + hex.EncodeToString(pcrs(0x10)[2]),
		"aws_nitro:pcr3:" + strings.Repeat("00", 48),
		"aws_nitro:pcr4:" + strings.Repeat("00", 48),
		"aws_nitro:pcr8:" + strings.Repeat("00", 48),
	}
	var got []string
	for _, s := range res.Selectors {
		got = append(got, s.String())
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("selectors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if res.Evidence["pcr0"] == "" || res.Evidence["module_id"] == "" {
		t.Errorf("evidence %v", res.Evidence)
	}
	// Renewal with the same ID succeeds.
	if _, err := v.Verify(context.Background(), attestors.VerifyRequest{
		Payload: payload, AgentKey: agentKey.Public(), TrustDomain: td, Challenge: c.Answer, Renewal: true, CurrentID: res.AgentID,
	}); err != nil {
		t.Fatalf("renewal: %v", err)
	}
	// A different CSR key than the one the collector bound fails.
	other := mustKey(t, elliptic.P256())
	if _, err := v.Verify(context.Background(), attestors.VerifyRequest{
		Payload: payload, AgentKey: other.Public(), TrustDomain: td, Challenge: c.Answer,
	}); err == nil || !strings.Contains(err.Error(), "does not commit") {
		t.Fatalf("other key: err = %v", err)
	}
}

func TestCollectorNoDevice(t *testing.T) {
	c, err := awsnitro.NewCollector(awsnitro.AgentConfig{Device: t.TempDir() + "/nsm"}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	key := mustKey(t, elliptic.P256())
	if _, err := c.Payload(context.Background(), attestors.CollectRequest{AgentKey: key.Public()}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Answer(context.Background(), make([]byte, 32)); err == nil || !strings.Contains(err.Error(), "nsm") {
		t.Fatalf("err = %v", err)
	}
}
