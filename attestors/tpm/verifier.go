package tpm

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/attestors"
	"github.com/hallmarkid/hallmark/registration"
	tpmdev "github.com/hallmarkid/hallmark/tpm"
)

// maxRemembered bounds the per-agent PCR memory used to name drifted PCRs.
const maxRemembered = 100_000

// Verifier is the server half: an attestors.NodeVerifier.
type Verifier struct {
	p   *policy
	log *slog.Logger
	now func() time.Time

	// mu guards the fields that follow.
	mu       sync.Mutex
	lastPCRs map[spiffeid.ID]map[int]string
}

var _ attestors.NodeVerifier = (*Verifier)(nil)

// NewVerifier validates cfg and loads the EK CA directory.
func NewVerifier(cfg ServerConfig, log *slog.Logger) (*Verifier, error) {
	p, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Verifier{p: p, log: log, now: now, lastPCRs: map[spiffeid.ID]map[int]string{}}, nil
}

// Type returns "tpm".
func (v *Verifier) Type() string { return Type }

// ReattestInterval is how often an agent must re-attest (0: at every
// SVID renewal); the server wiring enforces it.
func (v *Verifier) ReattestInterval() time.Duration { return v.p.reattest }

// Verify runs the whole attestation and fails closed on any error.
func (v *Verifier) Verify(ctx context.Context, req attestors.VerifyRequest) (attestors.Result, error) {
	res, err := v.verify(ctx, req)
	if err != nil {
		v.log.Warn("tpm attestation rejected", "renewal", req.Renewal, "current_id", idString(req.CurrentID), "error", err)
		return attestors.Result{}, err
	}
	v.log.Info("tpm attestation accepted", "agent_id", res.AgentID.String(), "renewal", req.Renewal,
		"ek_hash", res.Evidence["ek_hash"])
	return res, nil
}

func idString(id spiffeid.ID) string {
	if id.IsZero() {
		return ""
	}
	return id.String()
}

// session is one attestation between its challenge and the answer.
type session struct {
	ek        *ekKey
	agentID   spiffeid.ID
	ekHash    string
	certSels  []registration.Selector
	ak        *akKey
	secret    []byte
	quoteData []byte
	renewal   bool
}

func (v *Verifier) verify(ctx context.Context, req attestors.VerifyRequest) (attestors.Result, error) {
	if req.Challenge == nil {
		return attestors.Result{}, errors.New("tpm: no challenge function")
	}
	s, chal, err := v.begin(req)
	if err != nil {
		return attestors.Result{}, err
	}
	deadline := v.now().Add(v.p.quoteTimeout)
	cctx, cancel := context.WithTimeout(ctx, v.p.quoteTimeout)
	defer cancel()
	raw, err := req.Challenge(cctx, chal)
	if err != nil {
		// The answer never arrived: that proves nothing about the node.
		return attestors.Result{}, attestors.NoEvidence(fmt.Errorf("tpm: challenge: %w", err))
	}
	if v.now().After(deadline) || cctx.Err() != nil {
		return attestors.Result{}, attestors.NoEvidence(fmt.Errorf("tpm: challenge: answer came after the %s deadline: nonce expired", v.p.quoteTimeout))
	}
	res, err := v.finish(s, raw)
	if err != nil {
		// The answer arrived and does not hold: activation, quote, event
		// log or policy.
		return attestors.Result{}, attestors.Rejected(err)
	}
	return res, nil
}

// begin checks the payload (EK, AK) and makes the challenge. Errors about
// the payload are marked attestors.Rejected; the others are the server's.
func (v *Verifier) begin(req attestors.VerifyRequest) (*session, []byte, error) {
	if req.TrustDomain.IsZero() {
		return nil, nil, errors.New("tpm: no trust domain")
	}
	if req.Renewal && req.CurrentID.IsZero() {
		return nil, nil, errors.New("tpm: renewal without a current agent ID")
	}
	s, err := v.checkPayload(req)
	if err != nil {
		return nil, nil, attestors.Rejected(err)
	}
	chal, err := v.challenge(s, req)
	if err != nil {
		return nil, nil, err
	}
	return s, chal, nil
}

// checkPayload checks the agent's first message: the EK (certificate
// chain or allow-list) and the AK's attributes.
func (v *Verifier) checkPayload(req attestors.VerifyRequest) (*session, error) {
	payload, err := DecodePayload(req.Payload)
	if err != nil {
		return nil, err
	}

	// 1. The EK: certificate chain or allow-list.
	ek, err := parseEKPublic(payload.EKPublic)
	if err != nil {
		return nil, err
	}
	s := &session{renewal: req.Renewal, ek: ek}
	if s.ekHash, err = tpmdev.PublicKeyHash(ek.key); err != nil {
		return nil, err
	}
	if s.agentID, err = spiffeid.FromSegments(req.TrustDomain, "agent", "tpm", s.ekHash); err != nil {
		return nil, fmt.Errorf("tpm: agent ID: %w", err)
	}
	if req.Renewal && s.agentID != req.CurrentID {
		return nil, fmt.Errorf("tpm: renewal: EK gives agent ID %s, but the agent is %s", s.agentID, req.CurrentID)
	}
	if s.certSels, err = v.checkEK(payload, ek, s.ekHash); err != nil {
		return nil, err
	}

	// 2. The AK's attributes, before anything is sealed to it.
	if s.ak, err = parseAKPublic(payload.AKPublic); err != nil {
		return nil, err
	}
	return s, nil
}

// challenge makes the challenge of session s.
func (v *Verifier) challenge(s *session, req attestors.VerifyRequest) ([]byte, error) {
	ek := s.ek

	// 3. The challenge: a credential only the TPM holding both the EK and
	// the AK can activate, and a fresh nonce for the quote, bound to this
	// session by living only in it.
	s.secret = make([]byte, 32)
	nonce := make([]byte, NonceSize)
	if _, err := rand.Read(s.secret); err != nil {
		return nil, fmt.Errorf("tpm: random: %w", err)
	}
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("tpm: random: %w", err)
	}
	var err error
	if s.quoteData, err = QuoteData(nonce, req.AgentKey); err != nil {
		return nil, err
	}
	credential, encSecret, err := tpm2.CreateCredential(rand.Reader, ek.enc, s.ak.name, s.secret)
	if err != nil {
		return nil, fmt.Errorf("tpm: make credential: %w", err)
	}
	return Marshal(Challenge{Nonce: nonce, Credential: credential, Secret: encSecret, Bank: v.p.bank, PCRs: v.p.pcrs})
}

// finish checks the answer: activation, quote, event log, policy.
func (v *Verifier) finish(s *session, raw []byte) (attestors.Result, error) {
	ans, err := DecodeAnswer(raw)
	if err != nil {
		return attestors.Result{}, err
	}

	// 4. Credential activation.
	if subtle.ConstantTimeCompare(ans.Secret, s.secret) != 1 {
		return attestors.Result{}, errors.New("tpm: credential activation failed: wrong secret (AK not on the TPM holding this EK)")
	}

	// 5. The quote.
	pcrs, err := v.checkQuote(s.ak, ans, s.quoteData)
	if err != nil {
		return attestors.Result{}, err
	}

	// 6. The event log, against the quoted PCRs only.
	var el eventLogResult
	if len(ans.EventLog) > 0 {
		_, bankHash, _ := tpmdev.Bank(v.p.bank)
		if el, err = replayEventLog(ans.EventLog, bankHash, pcrs); err != nil {
			return attestors.Result{}, err
		}
	} else if v.p.requireLog {
		return attestors.Result{}, errors.New("tpm: no event log, but the policy requires one")
	}

	// 7. Policy.
	if err := v.checkPolicy(s.agentID, s.renewal, pcrs, el); err != nil {
		return attestors.Result{}, err
	}
	return v.result(s.agentID, s.ekHash, s.ak, pcrs, el, s.certSels), nil
}

// checkEK accepts the EK by certificate chain or allow-list and returns
// the selectors the certificate supports.
func (v *Verifier) checkEK(payload *Payload, ek *ekKey, ekHash string) ([]registration.Selector, error) {
	allowListed := v.p.ekHashes[ekHash]
	if len(payload.EKCert) == 0 {
		if allowListed {
			return nil, nil
		}
		return nil, fmt.Errorf("tpm: EK %s has no certificate and is not in ek_hashes", ekHash)
	}
	cert, id, err := parseEKCert(payload.EKCert)
	if err != nil {
		return nil, err
	}
	if !sameKey(cert.PublicKey, ek.key) {
		return nil, errors.New("tpm: EK certificate key does not match the EK public key")
	}
	if v.p.roots == nil {
		if allowListed {
			return nil, nil
		}
		return nil, fmt.Errorf("tpm: EK %s is not in ek_hashes (no ek_ca_dir configured)", ekHash)
	}
	if err := verifyEKCert(cert, payload.EKChain, ek.key, v.p, v.now()); err != nil {
		// A revocation is a statement that the EK must not be trusted: it
		// overrides the allow-list. Other certificate failures do not.
		if allowListed && !errors.Is(err, errRevoked) {
			v.log.Warn("tpm: EK certificate rejected, EK accepted by ek_hashes", "ek_hash", ekHash, "error", err)
			return nil, nil
		}
		return nil, err
	}
	var sels []registration.Selector
	if cn := cert.Issuer.CommonName; cn != "" {
		sels = append(sels, registration.Selector{Type: Type, Value: "ek-issuer-cn:" + cn})
	}
	if id.Manufacturer != "" {
		sels = append(sels, registration.Selector{Type: Type, Value: "manufacturer:" + manufacturerID(id.Manufacturer)})
	}
	return sels, nil
}

// checkQuote verifies structure, signature, nonce, selection and digest,
// and returns the quoted PCR values.
func (v *Verifier) checkQuote(ak *akKey, ans *Answer, quoteData []byte) (map[int][]byte, error) {
	att, info, err := ParseQuote(ans.Quote)
	if err != nil {
		return nil, err
	}
	if err := verifySignature(ak, ans.Quote, ans.Signature); err != nil {
		return nil, err
	}
	if len(att.ExtraData.Buffer) < 16 {
		return nil, fmt.Errorf("tpm: quote: nonce of %d bytes is missing or too short", len(att.ExtraData.Buffer))
	}
	if subtle.ConstantTimeCompare(att.ExtraData.Buffer, quoteData) != 1 {
		return nil, errors.New("tpm: quote: nonce does not match this session's challenge and agent key")
	}
	bankAlg, bankHash, _ := tpmdev.Bank(v.p.bank)
	sels := info.PCRSelect.PCRSelections
	if len(sels) != 1 {
		return nil, fmt.Errorf("tpm: quote: %d PCR banks selected, policy quotes one (%s)", len(sels), v.p.bank)
	}
	if sels[0].Hash != bankAlg {
		name := tpmdev.BankName(sels[0].Hash)
		if name == "" {
			name = fmt.Sprintf("%#x", uint16(sels[0].Hash))
		}
		return nil, fmt.Errorf("tpm: quote: PCR bank %s, policy bank is %s", name, v.p.bank)
	}
	if got := tpmdev.SelectedPCRs(sels[0].PCRSelect); !slices.Equal(got, v.p.pcrs) {
		return nil, fmt.Errorf("tpm: quote: PCR selection %v differs from policy selection %v", got, v.p.pcrs)
	}
	pcrs := make(map[int][]byte, len(ans.PCRs))
	for _, pv := range ans.PCRs {
		if !slices.Contains(v.p.pcrs, pv.Index) {
			return nil, fmt.Errorf("tpm: quote: PCR %d value supplied but not quoted", pv.Index)
		}
		if _, dup := pcrs[pv.Index]; dup {
			return nil, fmt.Errorf("tpm: quote: PCR %d value supplied twice", pv.Index)
		}
		if len(pv.Value) != bankHash.Size() {
			return nil, fmt.Errorf("tpm: quote: PCR %d value of %d bytes in bank %s", pv.Index, len(pv.Value), v.p.bank)
		}
		pcrs[pv.Index] = pv.Value
	}
	sh, _ := ak.signHash.Hash()
	d := sh.New()
	for _, i := range v.p.pcrs {
		val, ok := pcrs[i]
		if !ok {
			return nil, fmt.Errorf("tpm: quote: PCR %d is quoted but its value is missing", i)
		}
		d.Write(val)
	}
	if !bytes.Equal(d.Sum(nil), info.PCRDigest.Buffer) {
		return nil, errors.New("tpm: quote: PCR digest does not match the supplied PCR values")
	}
	return pcrs, nil
}

// checkPolicy applies golden PCR values and the Secure Boot requirement.
func (v *Verifier) checkPolicy(agentID spiffeid.ID, renewal bool, pcrs map[int][]byte, el eventLogResult) error {
	var bad []string
	var badIdx []int
	for _, i := range v.p.pcrs {
		allowed, ok := v.p.golden[i]
		if !ok {
			continue
		}
		if val := hex.EncodeToString(pcrs[i]); !allowed[val] {
			bad = append(bad, fmt.Sprintf("PCR %d (%s) = %s", i, v.p.bank, val))
			badIdx = append(badIdx, i)
		}
	}
	if len(bad) > 0 {
		v.mu.Lock()
		last := v.lastPCRs[agentID]
		v.mu.Unlock()
		var changed []int
		for i, val := range last {
			if hex.EncodeToString(pcrs[i]) != val {
				changed = append(changed, i)
			}
		}
		sort.Ints(changed)
		v.log.Warn("tpm: PCRs out of policy", "agent_id", agentID.String(), "renewal", renewal,
			"pcrs", badIdx, "changed_since_last_attestation", changed)
		return fmt.Errorf("tpm: PCR policy: %s not among the allowed values", strings.Join(bad, "; "))
	}
	if v.p.requireSecureBoot {
		switch {
		case el.secureBoot == nil && el.secureBootErr == nil:
			return errors.New("tpm: policy requires Secure Boot, but the agent sent no event log")
		case el.secureBoot == nil:
			return fmt.Errorf("tpm: policy requires Secure Boot, but its state is unknown: %v", el.secureBootErr)
		case !*el.secureBoot:
			return errors.New("tpm: policy requires Secure Boot, and it is disabled")
		}
	}
	return nil
}

func (v *Verifier) result(agentID spiffeid.ID, ekHash string, ak *akKey, pcrs map[int][]byte, el eventLogResult, certSels []registration.Selector) attestors.Result {
	sels := []registration.Selector{{Type: Type, Value: "ek-hash:" + ekHash}}
	sels = append(sels, certSels...)
	evidence := map[string]string{
		"ek_hash":  ekHash,
		"ak_name":  hex.EncodeToString(ak.name),
		"pcr_bank": v.p.bank,
	}
	remembered := make(map[int]string, len(pcrs))
	for _, i := range v.p.pcrs {
		val := hex.EncodeToString(pcrs[i])
		remembered[i] = val
		evidence["pcr"+strconv.Itoa(i)] = val
		if _, ok := v.p.golden[i]; ok {
			sels = append(sels, registration.Selector{Type: Type, Value: "pcr:" + v.p.bank + ":" + strconv.Itoa(i) + ":" + val})
		}
	}
	if el.secureBoot != nil {
		state := "disabled"
		if *el.secureBoot {
			state = "enabled"
		}
		sels = append(sels, registration.Selector{Type: Type, Value: "secureboot:" + state})
		evidence["secureboot"] = state
	}
	v.mu.Lock()
	if len(v.lastPCRs) >= maxRemembered {
		clear(v.lastPCRs)
	}
	v.lastPCRs[agentID] = remembered
	v.mu.Unlock()
	return attestors.Result{
		AgentID:     agentID,
		Selectors:   registration.SortSelectors(sels),
		CanReattest: true,
		Evidence:    evidence,
	}
}
