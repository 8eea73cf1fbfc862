package tpm_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/attestors"
	tpmatt "github.com/hallmarkid/hallmark/attestors/tpm"
	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/tpm"
	"github.com/hallmarkid/hallmark/tpm/tpmtest"
)

func ekHash(t testing.TB, n *node) string {
	t.Helper()
	h, err := n.col.Device().EKHash()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestVerifyAccepts(t *testing.T) {
	for _, tc := range []struct {
		name      string
		opts      nodeOpts
		allowList bool
		noCert    bool
		wantSels  []string
	}{
		{name: "ecc AK, rsa EK, CA chain", wantSels: []string{"ek-issuer-cn:Hallmark Test EK CA a", "manufacturer:00001014"}},
		{name: "rsa AK", opts: nodeOpts{akType: "rsa"}},
		{name: "ecc EK P-384", opts: nodeOpts{ekType: "ecc"}, wantSels: []string{"ek-issuer-cn:Hallmark Test EK CA a"}},
		{name: "allow-list without a certificate", allowList: true, noCert: true},
		{name: "allow-list with a certificate of an unknown CA", opts: nodeOpts{template: "c", ca: "b"}, allowList: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t, tc.opts)
			h := ekHash(t, n)
			cfg := tpmatt.ServerConfig{EKCADir: caDir(t, "a")}
			if tc.allowList {
				cfg.EKHashes = []string{h}
			}
			v := newVerifier(t, cfg)
			r := round{}
			if tc.noCert {
				r.payload = func(p *tpmatt.Payload) { p.EKCert = nil }
			}
			res, err := attest(t, v, n, r)
			checkErr(t, err, "")
			if want := "spiffe://example.org/agent/tpm/" + h; res.AgentID.String() != want {
				t.Fatalf("agent ID %s, want %s", res.AgentID, want)
			}
			if !res.CanReattest {
				t.Fatal("CanReattest is false")
			}
			set := registration.NewSelectorSet(res.Selectors...)
			for _, s := range append([]string{"ek-hash:" + h}, tc.wantSels...) {
				if !set.Includes([]registration.Selector{{Type: "tpm", Value: s}}) {
					t.Fatalf("selector %q missing from %v", s, res.Selectors)
				}
			}
			for _, k := range []string{"ek_hash", "ak_name", "pcr0", "pcr7"} {
				if res.Evidence[k] == "" {
					t.Fatalf("evidence %q missing: %v", k, res.Evidence)
				}
			}
		})
	}
}

func TestRenewal(t *testing.T) {
	n := newNode(t, nodeOpts{})
	v := newVerifier(t, tpmatt.ServerConfig{EKCADir: caDir(t, "a")})
	res, err := attest(t, v, n, round{})
	checkErr(t, err, "")
	other := spiffeid.RequireFromString("spiffe://example.org/agent/tpm/other")
	for _, tc := range []struct {
		name    string
		current spiffeid.ID
		wantErr string
	}{
		{name: "same agent", current: res.AgentID},
		{name: "other agent ID", current: other, wantErr: "renewal: EK gives agent ID"},
		{name: "no current ID", wantErr: "renewal without a current agent ID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := attest(t, v, n, round{renewal: true, currentID: tc.current})
			checkErr(t, err, tc.wantErr)
			if err == nil && got.AgentID != res.AgentID {
				t.Fatalf("renewed as %s", got.AgentID)
			}
		})
	}
}

// TestPCRDriftRefusesRenewal extends a policy PCR between attestation and
// renewal: the renewal is refused, naming the PCR.
func TestPCRDriftRefusesRenewal(t *testing.T) {
	n := newNode(t, nodeOpts{})
	zero := strings.Repeat("00", 32)
	v := newVerifier(t, tpmatt.ServerConfig{
		EKCADir:   caDir(t, "a"),
		PCRs:      []int{0, 1, 2, 3, 4, 5, 6, 7, 16},
		PCRPolicy: []tpmatt.PCRPolicy{{PCR: 16, Values: []string{zero}}},
	})
	res, err := attest(t, v, n, round{})
	checkErr(t, err, "")
	if !slices.Contains(res.Selectors, registration.Selector{Type: "tpm", Value: "pcr:sha256:16:" + zero}) {
		t.Fatalf("no PCR 16 selector in %v", res.Selectors)
	}
	if err := n.col.Device().ExtendPCR(16, "sha256", make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	_, err = attest(t, v, n, round{renewal: true, currentID: res.AgentID})
	checkErr(t, err, "PCR 16 (sha256) = ")
	// After a reboot PCR 16 is back to zero and the node attests again.
	n.inst.Reboot(t)
	_, err = attest(t, v, n, round{renewal: true, currentID: res.AgentID})
	checkErr(t, err, "")
}

// quoteWith makes a real quote on n's TPM with its AK, for forged answers.
func quoteWith(t testing.TB, n *node, data []byte, bank string, pcrs []int) tpm.Quote {
	t.Helper()
	ak, err := n.col.Device().LoadOrCreateAK(n.dir, tpm.ECC)
	if err != nil {
		t.Fatal(err)
	}
	q, err := n.col.Device().Quote(ak, data, bank, pcrs)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func setQuote(a *tpmatt.Answer, q tpm.Quote) {
	a.Quote, a.Signature, a.PCRs = q.Attest, q.Signature, nil
	for _, i := range slices.Sorted(func(yield func(int) bool) {
		for i := range q.PCRs {
			if !yield(i) {
				return
			}
		}
	}) {
		a.PCRs = append(a.PCRs, tpmatt.PCRValue{Index: i, Value: q.PCRs[i]})
	}
}

func editAK(t testing.TB, p *tpmatt.Payload, fn func(pub *tpm2.TPMTPublic)) {
	t.Helper()
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](p.AKPublic)
	if err != nil {
		t.Fatal(err)
	}
	fn(pub)
	p.AKPublic = tpm2.Marshal(*pub)
}

func editAttest(t testing.TB, a *tpmatt.Answer, fn func(att *tpm2.TPMSAttest)) {
	t.Helper()
	att, err := tpm2.Unmarshal[tpm2.TPMSAttest](a.Quote)
	if err != nil {
		t.Fatal(err)
	}
	fn(att)
	a.Quote = tpm2.Marshal(*att)
}

// certWithCriticalExt issues a certificate for key from CA "a" carrying an
// unknown critical extension.
func certWithCriticalExt(t testing.TB, key crypto.PublicKey) []byte {
	t.Helper()
	ca := tpmtest.SharedCA(t, "a")
	tmpl := &x509.Certificate{
		SerialNumber:    big.NewInt(7),
		Subject:         pkix.Name{CommonName: "ek"},
		NotBefore:       time.Now().Add(-time.Hour),
		NotAfter:        time.Now().Add(time.Hour),
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Critical: true, Value: []byte{5, 0}}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestVerifyRejects(t *testing.T) {
	a := newNode(t, nodeOpts{})
	b := newNode(t, nodeOpts{template: "b"})          // same CA, other EK
	c := newNode(t, nodeOpts{template: "c", ca: "b"}) // other CA
	dir := caDir(t, "a")
	base := tpmatt.ServerConfig{EKCADir: dir}
	key := agentKey(t)
	otherKey := agentKey(t)
	bPayload, err := b.col.Payload(context.Background(), attestors.CollectRequest{AgentKey: key})
	if err != nil {
		t.Fatal(err)
	}
	bP, _ := tpmatt.DecodePayload(bPayload)
	aEK, err := a.col.Device().EK()
	if err != nil {
		t.Fatal(err)
	}

	// A complete answer from an earlier session, for replays.
	var earlier *tpmatt.Answer
	if _, err := attest(t, newVerifier(t, base), a, round{key: key, answer: func(t testing.TB, ch *tpmatt.Challenge, ans *tpmatt.Answer) {
		cp := *ans
		earlier = &cp
	}}); err != nil {
		t.Fatal(err)
	}

	qd := func(t testing.TB, ch *tpmatt.Challenge, k crypto.PublicKey) []byte {
		d, err := tpmatt.QuoteData(ch.Nonce, k)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	type ans = func(t testing.TB, ch *tpmatt.Challenge, a *tpmatt.Answer)
	for _, tc := range []struct {
		name      string
		node      *node
		cfg       *tpmatt.ServerConfig
		payload   func(p *tpmatt.Payload)
		answer    ans
		challenge attestors.ChallengeFunc
		wantErr   string
	}{
		// Payload.
		{name: "garbage payload", payload: nil, challenge: nil, wantErr: "", node: nil},
		{name: "wrong version", payload: func(p *tpmatt.Payload) { p.Version = 2 }, wantErr: "payload version 2"},
		{name: "EK public not restricted", payload: func(p *tpmatt.Payload) {
			pub, _ := tpm2.Unmarshal[tpm2.TPMTPublic](p.EKPublic)
			pub.ObjectAttributes.Restricted = false
			p.EKPublic = tpm2.Marshal(*pub)
		}, wantErr: "EK public: not a restricted"},
		{name: "EK public trailing bytes", payload: func(p *tpmatt.Payload) { p.EKPublic = append(p.EKPublic, 0) }, wantErr: "EK public: trailing"},
		// EK trust.
		{name: "EK cert of another CA", node: c, wantErr: "does not chain to a configured manufacturer CA"},
		{name: "EK without cert, not allow-listed", payload: func(p *tpmatt.Payload) { p.EKCert = nil }, wantErr: "has no certificate and is not in ek_hashes"},
		{name: "allow-list only, EK not listed", cfg: &tpmatt.ServerConfig{EKHashes: []string{strings.Repeat("ab", 32)}}, wantErr: "is not in ek_hashes"},
		{name: "EK cert of another EK", payload: func(p *tpmatt.Payload) { p.EKCert = bP.EKCert }, wantErr: "EK certificate key does not match"},
		{name: "EK cert expired", cfg: &tpmatt.ServerConfig{EKCADir: dir, Now: func() time.Time { return time.Now().Add(20 * 365 * 24 * time.Hour) }}, wantErr: "expired"},
		{name: "EK cert malformed DER", payload: func(p *tpmatt.Payload) { p.EKCert = p.EKCert[:len(p.EKCert)/2] }, wantErr: "EK certificate: x509"},
		{name: "EK cert unknown critical extension", payload: func(p *tpmatt.Payload) { p.EKCert = certWithCriticalExt(t, aEK.Key) }, wantErr: "unhandled critical extension"},
		// AK attributes, checked before MakeCredential.
		{name: "AK not restricted", payload: func(p *tpmatt.Payload) {
			editAK(t, p, func(k *tpm2.TPMTPublic) { k.ObjectAttributes.Restricted = false })
		}, wantErr: "AK public: not restricted"},
		{name: "AK not signing", payload: func(p *tpmatt.Payload) {
			editAK(t, p, func(k *tpm2.TPMTPublic) { k.ObjectAttributes.SignEncrypt = false })
		}, wantErr: "not a signing key"},
		{name: "AK decrypt set", payload: func(p *tpmatt.Payload) { editAK(t, p, func(k *tpm2.TPMTPublic) { k.ObjectAttributes.Decrypt = true }) }, wantErr: "decrypt is set"},
		{name: "AK not fixedTPM", payload: func(p *tpmatt.Payload) {
			editAK(t, p, func(k *tpm2.TPMTPublic) { k.ObjectAttributes.FixedTPM = false })
		}, wantErr: "not fixedTPM"},
		{name: "AK not fixedParent", payload: func(p *tpmatt.Payload) {
			editAK(t, p, func(k *tpm2.TPMTPublic) { k.ObjectAttributes.FixedParent = false })
		}, wantErr: "not fixedParent"},
		{name: "AK not sensitiveDataOrigin", payload: func(p *tpmatt.Payload) {
			editAK(t, p, func(k *tpm2.TPMTPublic) { k.ObjectAttributes.SensitiveDataOrigin = false })
		}, wantErr: "not sensitiveDataOrigin"},
		{name: "AK weak curve", payload: func(p *tpmatt.Payload) {
			editAK(t, p, func(k *tpm2.TPMTPublic) {
				parms, _ := k.Parameters.ECCDetail()
				parms.CurveID = tpm2.TPMECCBNP256
			})
		}, wantErr: "weak or unknown curve"},
		{name: "AK RSA 1024", payload: func(p *tpmatt.Payload) {
			pub, _ := tpm.AKTemplate(tpm.RSA)
			parms, _ := pub.Parameters.RSADetail()
			parms.KeyBits = 1024
			pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: make([]byte, 128)})
			p.AKPublic = tpm2.Marshal(pub)
		}, wantErr: "RSA key of 1024 bits"},
		// Credential activation.
		{name: "AK public differs from the loaded AK (name mismatch)", payload: func(p *tpmatt.Payload) {
			editAK(t, p, func(k *tpm2.TPMTPublic) { k.ObjectAttributes.NoDA = false })
		}, wantErr: "activate credential"},
		{name: "AK of another TPM", payload: func(p *tpmatt.Payload) { p.AKPublic = bP.AKPublic }, wantErr: "activate credential"},
		{name: "wrong activation secret", answer: func(t testing.TB, ch *tpmatt.Challenge, a *tpmatt.Answer) { a.Secret = make([]byte, 32) }, wantErr: "wrong secret"},
		{name: "replayed answer of an earlier session", challenge: func(context.Context, []byte) ([]byte, error) { return tpmatt.Marshal(earlier) }, wantErr: "wrong secret"},
		// Quote structure.
		{name: "quote bad magic", answer: func(t testing.TB, ch *tpmatt.Challenge, a *tpmatt.Answer) { a.Quote[0] ^= 0xff }, wantErr: "bad magic"},
		{name: "quote not a quote", answer: func(t testing.TB, ch *tpmatt.Challenge, a *tpmatt.Answer) {
			editAttest(t, a, func(att *tpm2.TPMSAttest) {
				att.Type = tpm2.TPMSTAttestCertify
				att.Attested = tpm2.NewTPMUAttest(tpm2.TPMSTAttestCertify, &tpm2.TPMSCertifyInfo{})
			})
		}, wantErr: "is not a quote"},
		{name: "quote trailing bytes", answer: func(t testing.TB, ch *tpmatt.Challenge, a *tpmatt.Answer) { a.Quote = append(a.Quote, 0) }, wantErr: "quote: trailing"},
		// Signature.
		{name: "quote signed by another AK", answer: func(t testing.TB, ch *tpmatt.Challenge, an *tpmatt.Answer) {
			setQuote(an, quoteWith(t, b, qd(t, ch, key), ch.Bank, ch.PCRs))
		}, wantErr: "not signed by this AK"},
		{name: "quote altered after signing", answer: func(t testing.TB, ch *tpmatt.Challenge, a *tpmatt.Answer) {
			editAttest(t, a, func(att *tpm2.TPMSAttest) { att.FirmwareVersion++ })
		}, wantErr: "not signed by this AK"},
		{name: "signature trailing bytes", answer: func(t testing.TB, ch *tpmatt.Challenge, a *tpmatt.Answer) { a.Signature = append(a.Signature, 0) }, wantErr: "signature: trailing"},
		// Nonce.
		{name: "nonce missing", answer: func(t testing.TB, ch *tpmatt.Challenge, an *tpmatt.Answer) {
			setQuote(an, quoteWith(t, a, nil, ch.Bank, ch.PCRs))
		}, wantErr: "nonce of 0 bytes is missing or too short"},
		{name: "nonce short", answer: func(t testing.TB, ch *tpmatt.Challenge, an *tpmatt.Answer) {
			setQuote(an, quoteWith(t, a, ch.Nonce[:8], ch.Bank, ch.PCRs))
		}, wantErr: "nonce of 8 bytes"},
		{name: "nonce raw, not bound to the agent key", answer: func(t testing.TB, ch *tpmatt.Challenge, an *tpmatt.Answer) {
			setQuote(an, quoteWith(t, a, ch.Nonce, ch.Bank, ch.PCRs))
		}, wantErr: "nonce does not match"},
		{name: "quote bound to another CSR key", answer: func(t testing.TB, ch *tpmatt.Challenge, an *tpmatt.Answer) {
			setQuote(an, quoteWith(t, a, qd(t, ch, otherKey), ch.Bank, ch.PCRs))
		}, wantErr: "nonce does not match"},
		{name: "quote of an earlier session (reused nonce)", answer: func(t testing.TB, ch *tpmatt.Challenge, a *tpmatt.Answer) {
			a.Quote, a.Signature, a.PCRs = earlier.Quote, earlier.Signature, earlier.PCRs
		}, wantErr: "nonce does not match"},
		{name: "answer after the deadline (expired nonce)", cfg: &tpmatt.ServerConfig{EKCADir: dir, QuoteTimeout: "50ms"},
			answer: func(t testing.TB, ch *tpmatt.Challenge, a *tpmatt.Answer) { time.Sleep(100 * time.Millisecond) }, wantErr: "deadline"},
		// PCR selection and values.
		{name: "PCR selection differs from policy", answer: func(t testing.TB, ch *tpmatt.Challenge, an *tpmatt.Answer) {
			setQuote(an, quoteWith(t, a, qd(t, ch, key), ch.Bank, ch.PCRs[:len(ch.PCRs)-1]))
		}, wantErr: "differs from policy selection"},
		{name: "PCR bank differs from policy", answer: func(t testing.TB, ch *tpmatt.Challenge, an *tpmatt.Answer) {
			setQuote(an, quoteWith(t, a, qd(t, ch, key), "sha1", ch.PCRs))
		}, wantErr: "PCR bank sha1, policy bank is sha256"},
		{name: "PCR value altered", answer: func(t testing.TB, ch *tpmatt.Challenge, a *tpmatt.Answer) { a.PCRs[3].Value[0] ^= 1 }, wantErr: "PCR digest does not match"},
		{name: "PCR value missing", answer: func(t testing.TB, ch *tpmatt.Challenge, a *tpmatt.Answer) { a.PCRs = a.PCRs[1:] }, wantErr: "PCR 0 is quoted but its value is missing"},
		{name: "PCR value not quoted", answer: func(t testing.TB, ch *tpmatt.Challenge, a *tpmatt.Answer) {
			a.PCRs = append(a.PCRs, tpmatt.PCRValue{Index: 16, Value: make([]byte, 32)})
		}, wantErr: "PCR 16 value supplied but not quoted"},
		{name: "PCR value twice", answer: func(t testing.TB, ch *tpmatt.Challenge, a *tpmatt.Answer) { a.PCRs = append(a.PCRs, a.PCRs[0]) }, wantErr: "supplied twice"},
		{name: "PCR value of another bank's size", answer: func(t testing.TB, ch *tpmatt.Challenge, a *tpmatt.Answer) { a.PCRs[0].Value = make([]byte, 20) }, wantErr: "of 20 bytes in bank sha256"},
		// Event log.
		{name: "event log garbage", answer: func(t testing.TB, ch *tpmatt.Challenge, a *tpmatt.Answer) { a.EventLog = []byte{1, 2, 3} }, wantErr: "event log: parse"},
		{name: "event log does not replay", answer: func(t testing.TB, ch *tpmatt.Challenge, a *tpmatt.Answer) {
			a.EventLog = syntheticLog(4, []byte("shim"))
		}, wantErr: "does not replay to the quoted PCRs [4]"},
		{name: "event log too large", answer: func(t testing.TB, ch *tpmatt.Challenge, a *tpmatt.Answer) {
			a.EventLog = make([]byte, tpmatt.MaxEventLogSize+1)
		}, wantErr: "exceeds"},
		// Policy.
		{name: "golden PCR value mismatch", cfg: &tpmatt.ServerConfig{EKCADir: dir, PCRPolicy: []tpmatt.PCRPolicy{{PCR: 0, Values: []string{strings.Repeat("ff", 32)}}}}, wantErr: "PCR 0 (sha256) = 0000"},
		{name: "secure boot required, no event log", cfg: &tpmatt.ServerConfig{EKCADir: dir, RequireSecureBoot: true}, wantErr: "no event log"},
		{name: "event log required", cfg: &tpmatt.ServerConfig{EKCADir: dir, RequireEventLog: true}, wantErr: "no event log"},
		{name: "secure boot required, state unknown", cfg: &tpmatt.ServerConfig{EKCADir: dir, RequireSecureBoot: true},
			answer: func(t testing.TB, ch *tpmatt.Challenge, a *tpmatt.Answer) { a.EventLog = syntheticLog(16) }, wantErr: "Secure Boot, but its state is unknown"},
		// Challenge transport.
		{name: "challenge fails", challenge: func(context.Context, []byte) ([]byte, error) { return nil, context.Canceled }, wantErr: "tpm: challenge: context canceled"},
		{name: "answer garbage", challenge: func(context.Context, []byte) ([]byte, error) { return []byte("{"), nil }, wantErr: "decode answer"},
		{name: "answer unknown field", challenge: func(context.Context, []byte) ([]byte, error) { return []byte(`{"x":1}`), nil }, wantErr: "unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "garbage payload" {
				v := newVerifier(t, base)
				_, err := v.Verify(context.Background(), attestors.VerifyRequest{Payload: []byte("nope"), Challenge: func(context.Context, []byte) ([]byte, error) {
					t.Fatal("challenged on a garbage payload")
					return nil, nil
				}, AgentKey: key, TrustDomain: td})
				checkErr(t, err, "decode payload")
				return
			}
			n := tc.node
			if n == nil {
				n = a
			}
			cfg := base
			if tc.cfg != nil {
				cfg = *tc.cfg
			}
			v := newVerifier(t, cfg)
			res, err := attest(t, v, n, round{key: key, payload: tc.payload, answer: tc.answer, challenge: tc.challenge})
			checkErr(t, err, tc.wantErr)
			if !res.AgentID.IsZero() || res.Selectors != nil {
				t.Fatalf("a rejection returned a result: %+v", res)
			}
		})
	}
}

// The SHA-1 bank works once opted into: the agent quotes the bank the
// server asks for, and the policy and selectors are in SHA-1.
func TestSHA1PCRBankOptIn(t *testing.T) {
	n := newNode(t, nodeOpts{})
	zero := strings.Repeat("00", 20)
	v := newVerifier(t, tpmatt.ServerConfig{EKCADir: caDir(t, "a"), PCRBank: "sha1", AllowSHA1PCRBank: true,
		PCRs: []int{0, 16}, PCRPolicy: []tpmatt.PCRPolicy{{PCR: 16, Values: []string{zero}}}})
	res, err := attest(t, v, n, round{})
	checkErr(t, err, "")
	if res.Evidence["pcr_bank"] != "sha1" || len(res.Evidence["pcr0"]) != 40 {
		t.Fatalf("evidence %v", res.Evidence)
	}
	if !registration.NewSelectorSet(res.Selectors...).Includes([]registration.Selector{{Type: "tpm", Value: "pcr:sha1:16:" + zero}}) {
		t.Fatalf("selectors %v", res.Selectors)
	}
}
