package awsnitro

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/veraison/go-cose"

	"github.com/hallmarkid/hallmark/attestors"
	"github.com/hallmarkid/hallmark/registration"
)

// NonceSize is the size of the server challenge put into the document nonce.
const NonceSize = 32

// maxReplayEntries bounds the replay cache.
const maxReplayEntries = 1 << 16

// Option configures a Verifier.
type Option interface{ apply(*Verifier) }

type optionFunc func(*Verifier)

func (f optionFunc) apply(v *Verifier) { f(v) }

// WithClock sets the time source (default time.Now). Tests use it to verify
// historical documents at their own timestamp.
func WithClock(now func() time.Time) Option { return optionFunc(func(v *Verifier) { v.now = now }) }

// WithRoot replaces the pinned AWS Nitro Enclaves Root G1; for tests only.
func WithRoot(root *x509.Certificate) Option {
	return optionFunc(func(v *Verifier) { v.root = root })
}

// Verifier is the server half of the aws_nitro attestor.
type Verifier struct {
	log    *slog.Logger
	now    func() time.Time
	root   *x509.Certificate
	policy policy

	// mu guards seen: SHA-256 digests of accepted documents' payloads (what
	// the signature covers) and their timestamps, kept until they are too old
	// to be accepted anyway.
	mu   sync.Mutex
	seen map[[32]byte]time.Time
}

var _ attestors.NodeVerifier = (*Verifier)(nil)

// NewVerifier validates cfg and returns a verifier.
func NewVerifier(cfg ServerConfig, log *slog.Logger, opts ...Option) (*Verifier, error) {
	p, err := cfg.policy()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	v := &Verifier{log: log, now: time.Now, root: rootG1, policy: p, seen: map[[32]byte]time.Time{}}
	for _, o := range opts {
		o.apply(v)
	}
	return v, nil
}

// Type returns "aws_nitro".
func (v *Verifier) Type() string { return Type }

// Hello is the agent's first payload; the document itself comes back as the
// answer to the server's nonce.
type Hello struct {
	Version int `json:"version"`
}

// Expect holds what a document must commit to. A nil field is not checked;
// Verify always sets both.
type Expect struct {
	// Nonce must equal the document's nonce.
	Nonce []byte
	// PublicKey (PKIX DER) must equal the document's public_key.
	PublicKey []byte
}

// Verify runs one nonce round with the agent and verifies the returned
// document. The document's nonce must be the fresh challenge and its
// public_key the PKIX DER of req.AgentKey.
func (v *Verifier) Verify(ctx context.Context, req attestors.VerifyRequest) (attestors.Result, error) {
	var hello Hello
	if err := decodeStrictJSON(req.Payload, &hello); err != nil {
		return attestors.Result{}, attestors.Rejected(fmt.Errorf("awsnitro: payload: %w", err))
	}
	if hello.Version != 1 {
		return attestors.Result{}, attestors.Rejected(fmt.Errorf("awsnitro: payload: unsupported version %d", hello.Version))
	}
	if req.Challenge == nil {
		return attestors.Result{}, errors.New("awsnitro: no challenge channel")
	}
	if req.AgentKey == nil {
		return attestors.Result{}, errors.New("awsnitro: no agent key to bind")
	}
	pkix, err := x509.MarshalPKIXPublicKey(req.AgentKey)
	if err != nil {
		return attestors.Result{}, fmt.Errorf("awsnitro: agent key: %w", err)
	}
	nonce := make([]byte, NonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return attestors.Result{}, fmt.Errorf("awsnitro: nonce: %w", err)
	}
	answer, err := req.Challenge(ctx, nonce)
	if err != nil {
		return attestors.Result{}, attestors.NoEvidence(fmt.Errorf("awsnitro: challenge: %w", err))
	}
	// From here on every failure is about the document the agent sent.
	doc, err := v.VerifyDocument(answer, Expect{Nonce: nonce, PublicKey: pkix})
	if err != nil {
		v.log.Warn("aws_nitro attestation rejected", "err", err)
		return attestors.Result{}, attestors.Rejected(err)
	}
	res, err := v.result(doc, req.TrustDomain)
	if err == nil && req.Renewal && res.AgentID != req.CurrentID {
		err = fmt.Errorf("awsnitro: renewal: document yields %q, agent is %q", res.AgentID, req.CurrentID)
	}
	if err != nil {
		v.log.Warn("aws_nitro attestation rejected", "module_id", doc.ModuleID, "err", err)
		return attestors.Result{}, attestors.Rejected(err)
	}
	v.log.Info("aws_nitro attestation verified", "agent_id", res.AgentID.String(), "pcr0", res.Evidence["pcr0"])
	return res, nil
}

// VerifyDocument verifies a raw attestation document at the verifier's
// clock: strict decoding, chain to the pinned root, COSE ES384 signature by
// the leaf, age and skew, debug mode, PCR policy, the expectations in want
// and single use.
func (v *Verifier) VerifyDocument(raw []byte, want Expect) (*Document, error) {
	doc, err := ParseDocument(raw)
	if err != nil {
		return nil, err
	}
	now := v.now()
	ts := time.UnixMilli(int64(min(doc.Timestamp, 1<<62)))
	if ts.After(now.Add(v.policy.skew)) {
		return nil, fmt.Errorf("awsnitro: document timestamp %s is in the future (now %s, skew %s)", ts.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), v.policy.skew)
	}
	if age := now.Sub(ts); age > v.policy.maxAge {
		return nil, fmt.Errorf("awsnitro: document is %s old, older than max_age %s", age.Truncate(time.Second), v.policy.maxAge)
	}
	leafKey, err := v.verifyChain(doc, now)
	if err != nil {
		return nil, err
	}
	if err := verifySignature(doc, leafKey); err != nil {
		return nil, err
	}
	if isDebug(doc.PCRs) && !v.policy.allowDebug {
		return nil, errors.New("awsnitro: debug-mode enclave (PCR0-2 all zero) rejected; set allow_debug to accept")
	}
	if err := v.policy.checkPCRs(doc.PCRs); err != nil {
		return nil, err
	}
	if want.Nonce != nil && subtle.ConstantTimeCompare(want.Nonce, doc.Nonce) != 1 {
		return nil, errors.New("awsnitro: document nonce does not match the server challenge")
	}
	if want.PublicKey != nil && subtle.ConstantTimeCompare(want.PublicKey, doc.PublicKey) != 1 {
		return nil, errors.New("awsnitro: document public_key does not commit to the agent's key")
	}
	if err := checkSegment(doc.ModuleID); err != nil {
		return nil, err
	}
	if err := v.markSeen(doc, ts, now); err != nil {
		return nil, err
	}
	return doc, nil
}

func (v *Verifier) verifyChain(doc *Document, now time.Time) (*ecdsa.PublicKey, error) {
	if subtle.ConstantTimeCompare(doc.CABundle[0], v.root.Raw) != 1 {
		return nil, fmt.Errorf("awsnitro: cabundle root (sha256 %s) is not the pinned root", fingerprint(doc.CABundle[0]))
	}
	roots := x509.NewCertPool()
	roots.AddCert(v.root)
	inter := x509.NewCertPool()
	for i, der := range doc.CABundle[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("awsnitro: cabundle[%d]: %w", i+1, err)
		}
		inter.AddCert(c)
	}
	leaf, err := x509.ParseCertificate(doc.Certificate)
	if err != nil {
		return nil, fmt.Errorf("awsnitro: certificate: %w", err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, fmt.Errorf("awsnitro: certificate chain: %w", err)
	}
	key, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || key.Curve != elliptic.P384() {
		return nil, errors.New("awsnitro: leaf key is not ECDSA P-384")
	}
	return key, nil
}

func verifySignature(doc *Document, key *ecdsa.PublicKey) error {
	verifier, err := cose.NewVerifier(cose.AlgorithmES384, key)
	if err != nil {
		return fmt.Errorf("awsnitro: signature: %w", err)
	}
	rawProtected, err := cbor.Marshal(doc.protected)
	if err != nil {
		return fmt.Errorf("awsnitro: signature: %w", err)
	}
	msg := cose.Sign1Message{
		Headers: cose.Headers{
			Protected:    cose.ProtectedHeader{cose.HeaderLabelAlgorithm: cose.AlgorithmES384},
			RawProtected: rawProtected,
		},
		Payload:   doc.payload,
		Signature: doc.signature,
	}
	if err := msg.Verify(nil, verifier); err != nil {
		return fmt.Errorf("awsnitro: signature does not verify with the leaf key: %w", err)
	}
	return nil
}

// isDebug reports whether PCR0, PCR1 and PCR2 are all zero, which the NSM
// reports for enclaves started in debug mode.
func isDebug(pcrs map[uint][]byte) bool {
	for _, i := range []uint{0, 1, 2} {
		v, ok := pcrs[i]
		if !ok {
			return false
		}
		for _, b := range v {
			if b != 0 {
				return false
			}
		}
	}
	return true
}

// markSeen rejects a document whose payload was accepted before. The key is
// the digest of the signed payload, never of the signature: ECDSA signatures
// are malleable ((r, s) and (r, n-s) both verify) and the COSE envelope has
// more than one encoding (optional tag, null or empty unprotected header), so
// one signed document has several valid byte strings. The protected header,
// the other signed part, is pinned to {1: -35} by the parser.
func (v *Verifier) markSeen(doc *Document, ts, now time.Time) error {
	key := sha256.Sum256(doc.payload)
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, dup := v.seen[key]; dup {
		return errors.New("awsnitro: document was already used")
	}
	if len(v.seen) >= maxReplayEntries {
		horizon := now.Add(-v.policy.maxAge - v.policy.skew)
		for k, t := range v.seen {
			if t.Before(horizon) {
				delete(v.seen, k)
			}
		}
		if len(v.seen) >= maxReplayEntries {
			return errors.New("awsnitro: replay cache full, try again later")
		}
	}
	v.seen[key] = ts
	return nil
}

func (v *Verifier) result(doc *Document, td spiffeid.TrustDomain) (attestors.Result, error) {
	id, err := spiffeid.FromSegments(td, "agent", Type, doc.ModuleID)
	if err != nil {
		return attestors.Result{}, fmt.Errorf("awsnitro: agent ID: %w", err)
	}
	if _, err := registration.ParseID(id.String()); err != nil {
		return attestors.Result{}, fmt.Errorf("awsnitro: agent ID: %w", err)
	}
	sels := []registration.Selector{{Type: Type, Value: "module_id:" + doc.ModuleID}}
	for _, i := range []uint{0, 1, 2, 3, 4, 8} {
		if pcr, ok := doc.PCRs[i]; ok {
			sels = append(sels, registration.Selector{Type: Type, Value: "pcr" + strconv.Itoa(int(i)) + ":" + hex.EncodeToString(pcr)})
		}
	}
	ev := map[string]string{
		"module_id": doc.ModuleID,
		"timestamp": time.UnixMilli(int64(doc.Timestamp)).UTC().Format(time.RFC3339Nano),
	}
	if pcr0, ok := doc.PCRs[0]; ok {
		ev["pcr0"] = hex.EncodeToString(pcr0)
	}
	return attestors.Result{
		AgentID:     id,
		Selectors:   registration.SortSelectors(sels),
		CanReattest: true,
		Evidence:    ev,
	}, nil
}

// checkSegment requires s to be a valid SPIFFE path segment.
func checkSegment(s string) error {
	if s == "." || s == ".." {
		return fmt.Errorf("awsnitro: module_id %q is not a valid SPIFFE path segment", s)
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("awsnitro: module_id %q is not a valid SPIFFE path segment", s)
		}
	}
	return nil
}

func fingerprint(der []byte) string {
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:])
}

// decodeStrictJSON decodes one JSON value, refusing unknown fields and
// trailing data.
func decodeStrictJSON(b []byte, v any) error {
	if len(b) > 4096 {
		return errors.New("too large")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data")
	}
	return nil
}
